//! The IVF -> Y4M loop of `excamera decode` for a regular input file, in Rust.
//!
//! Driven from Python, a frame cost about 20 K instructions of interpreter work besides its
//! decoding (the IVF reader, generators, two extension calls): about 1 ms of CPU on a 640x272
//! stream of 250 frames. Here each frame is read with `pread`, decoded and written with the
//! GIL released, and the GIL is taken back between frames only to check for signals (Ctrl-C).
//! The IVF errors say what `excamera.xc.ivf.IvfReader` says, word for word.

use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;

use xc::decoder::Decoder as XcDecoder;

/// The largest payload size a frame header may claim (`excamera.xc.ivf.MAX_FRAME`).
const MAX_FRAME: usize = 256 * 1024 * 1024;
const FRAME_HEADER_SIZE: usize = 12;

/// Why the loop stopped before the end of the file or the frame limit.
pub(crate) enum Stop {
    /// The whole error line (a damaged IVF file, or a frame that did not decode).
    Error(String),
    /// The shown frame `index` (in the file) is `w`x`h`, not the size the caller expects.
    Resized { index: u64, w: usize, h: usize },
}

/// What one step of the loop did.
enum Step {
    End,
    Hidden,
    Shown,
    Stop(Stop),
}

/// The loop's arguments besides the decoder.
pub(crate) struct Job<'a> {
    /// The open input, positioned by `offset`; not closed here.
    pub(crate) in_fd: i32,
    pub(crate) offset: u64,
    /// The index in the file of the frame at `offset` (for error messages).
    pub(crate) first_index: u64,
    /// How the input is named in errors.
    pub(crate) name: &'a str,
    /// The open output; not closed here.
    pub(crate) out_fd: i32,
    pub(crate) y4m: bool,
    /// Written just before the first shown frame (a Y4M file header), if not empty.
    pub(crate) header: &'a [u8],
    /// Stop after this many frames (hidden ones included); 0: no limit.
    pub(crate) limit: u64,
    /// Shown frames must have this (width, height).
    pub(crate) size: Option<(usize, usize)>,
}

/// Frames read, frames shown, and why it stopped early (None: end of file or limit).
pub(crate) type Outcome = (u64, u64, Option<Stop>);

/// Read `buf.len()` bytes at `*offset` (fewer only at the end of the file), moving `*offset`.
fn read_full(file: &File, buf: &mut [u8], offset: &mut u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], *offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    *offset += n as u64;
    Ok(n)
}

/// Decode and write every frame of `job` (see `StreamDecoder.decode_ivf_to`). A failed read or
/// write is the `Err`; the decoder keeps the state of the last frame that decoded.
pub(crate) fn run(
    py: pyo3::Python<'_>,
    dec: &mut XcDecoder,
    job: &Job<'_>,
) -> pyo3::PyResult<Result<Outcome, io::Error>> {
    // SAFETY: the descriptor stays owned by the caller: the `File` is never dropped
    // (`ManuallyDrop`), so it is not closed here; a descriptor that is not open makes the
    // reads fail with EBADF, which is returned.
    let input = ManuallyDrop::new(unsafe { File::from_raw_fd(job.in_fd) });
    let mut offset = job.offset;
    let mut data = Vec::new();
    let (mut read, mut shown) = (0u64, 0u64);
    while job.limit == 0 || read < job.limit {
        let index = job.first_index + read;
        let step = py.allow_threads(|| -> io::Result<Step> {
            let mut head = [0u8; FRAME_HEADER_SIZE];
            let got = read_full(&input, &mut head, &mut offset)?;
            if got == 0 {
                return Ok(Step::End);
            }
            let name = job.name;
            if got < FRAME_HEADER_SIZE {
                return Ok(Step::Stop(Stop::Error(format!(
                    "{name}: frame {index}: frame header truncated ({got} of {FRAME_HEADER_SIZE} \
                     bytes)"
                ))));
            }
            let size = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if size > MAX_FRAME {
                return Ok(Step::Stop(Stop::Error(format!(
                    "{name}: frame {index}: size {size} bytes is implausible"
                ))));
            }
            // Grown a megabyte at a time, as far as the file has bytes: a size field that lies
            // does not allocate what it claims.
            data.clear();
            while data.len() < size {
                let start = data.len();
                let want = (size - start).min(1 << 20);
                data.resize(start + want, 0);
                let n = read_full(&input, &mut data[start..], &mut offset)?;
                data.truncate(start + n);
                if n < want {
                    break;
                }
            }
            if data.len() != size {
                return Ok(Step::Stop(Stop::Error(format!(
                    "{name}: frame {index} is truncated ({} of {size} bytes)",
                    data.len()
                ))));
            }
            let frame = match dec.decode(&data) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(Step::Hidden),
                Err(e) => {
                    return Ok(Step::Stop(Stop::Error(format!("{name}: frame {index}: {e}"))))
                }
            };
            let (w, h) = (frame.display_width, frame.display_height);
            if job.size.is_some_and(|s| s != (w, h)) {
                return Ok(Step::Stop(Stop::Resized { index, w, h }));
            }
            let header = if shown == 0 { job.header } else { &[][..] };
            crate::write_frame(job.out_fd, header, &frame, job.y4m)?;
            Ok(Step::Shown)
        });
        match step {
            Ok(Step::End) => break,
            Ok(Step::Hidden) => read += 1,
            Ok(Step::Shown) => {
                read += 1;
                shown += 1;
            }
            Ok(Step::Stop(stop)) => return Ok(Ok((read, shown, Some(stop)))),
            Err(e) => return Ok(Err(e)),
        }
        // Between frames, as the Python loop would: Ctrl-C raises KeyboardInterrupt here.
        py.check_signals()?;
    }
    Ok(Ok((read, shown, None)))
}
