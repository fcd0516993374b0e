//! Picture buffers.
//!
//! VP8 reconstructs whole macroblocks, so every plane is stored at the macroblock-aligned size
//! (luma rounded up to a multiple of 16, chroma to a multiple of 8) with no border. Motion
//! compensation that reaches outside a reference plane reads the nearest edge pixel of the
//! *aligned* plane (coordinate clamping), which is what libvpx's border extension amounts to.
//! Cropping to the display size happens only on output.

/// One 8-bit plane, stored row-major with `stride == width`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Plane {
    /// Width in pixels (in a [`Frame`], padded to whole macroblocks).
    pub width: usize,
    /// Height in pixels (in a [`Frame`], padded to whole macroblocks).
    pub height: usize,
    /// Distance in bytes between the starts of two rows.
    pub stride: usize,
    /// The pixels, row by row.
    pub data: Vec<u8>,
}

impl Plane {
    /// A plane of `width` x `height` zero pixels.
    pub fn new(width: usize, height: usize) -> Self {
        Plane { width, height, stride: width, data: vec![0; width * height] }
    }

    /// A plane of `width` x `height` pixels of `value`.
    pub fn filled(width: usize, height: usize, value: u8) -> Self {
        Plane { width, height, stride: width, data: vec![value; width * height] }
    }

    #[inline]
    /// The pixel at column `x`, row `y`.
    pub fn at(&self, x: usize, y: usize) -> u8 {
        self.data[y * self.stride + x]
    }

    /// Pixel at (x, y), with coordinates outside the plane clamped to its edge.
    #[inline]
    pub fn at_clamped(&self, x: isize, y: isize) -> u8 {
        let x = x.clamp(0, self.width as isize - 1) as usize;
        let y = y.clamp(0, self.height as isize - 1) as usize;
        self.data[y * self.stride + x]
    }
}

/// A decoded picture: three planes at macroblock-aligned size plus the display size.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Width of the displayed picture (the planes are padded to whole macroblocks).
    pub display_width: usize,
    /// Height of the displayed picture.
    pub display_height: usize,
    /// Luma plane.
    pub y: Plane,
    /// Blue-difference chroma plane (half size).
    pub u: Plane,
    /// Red-difference chroma plane (half size).
    pub v: Plane,
}

impl Frame {
    /// A frame for a `width` x `height` picture, every plane set to `fill`.
    pub fn new(width: usize, height: usize, fill: u8) -> Self {
        let mbw = width.div_ceil(16);
        let mbh = height.div_ceil(16);
        Frame {
            display_width: width,
            display_height: height,
            y: Plane::filled(mbw * 16, mbh * 16, fill),
            u: Plane::filled(mbw * 8, mbh * 8, fill),
            v: Plane::filled(mbw * 8, mbh * 8, fill),
        }
    }

    /// [`Frame::new`], or `None` where the allocator refuses the planes (a huge declared
    /// picture under a memory limit), where `vec!` would abort the process.
    pub(crate) fn try_new(width: usize, height: usize, fill: u8) -> Option<Self> {
        let plane = |w: usize, h: usize| {
            let mut data = Vec::new();
            data.try_reserve_exact(w.checked_mul(h)?).ok()?;
            data.resize(w * h, fill);
            Some(Plane { width: w, height: h, stride: w, data })
        };
        let (mbw, mbh) = (width.div_ceil(16), height.div_ceil(16));
        Some(Frame {
            display_width: width,
            display_height: height,
            y: plane(mbw * 16, mbh * 16)?,
            u: plane(mbw * 8, mbh * 8)?,
            v: plane(mbw * 8, mbh * 8)?,
        })
    }

    /// Bytes of the planes of a `width` x `height` frame.
    pub(crate) fn bytes_for(width: usize, height: usize) -> usize {
        let (mbw, mbh) = (width.div_ceil(16), height.div_ceil(16));
        mbw * mbh * (256 + 2 * 64)
    }

    /// Width in macroblocks.
    pub fn mb_cols(&self) -> usize {
        self.y.width / 16
    }

    /// Height in macroblocks.
    pub fn mb_rows(&self) -> usize {
        self.y.height / 16
    }

    /// The display-size I420 bytes (Y, then U, then V; chroma is `(w+1)/2 x (h+1)/2`), the layout
    /// that `vpxdec --i420` writes and the test vectors' MD5s cover.
    pub fn to_i420(&self) -> Vec<u8> {
        let (w, h) = (self.display_width, self.display_height);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let mut out = Vec::with_capacity(w * h + 2 * cw * ch);
        for (p, pw, ph) in [(&self.y, w, h), (&self.u, cw, ch), (&self.v, cw, ch)] {
            for row in 0..ph {
                out.extend_from_slice(&p.data[row * p.stride..row * p.stride + pw]);
            }
        }
        out
    }
}
