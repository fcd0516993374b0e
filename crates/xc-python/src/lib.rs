//! PyO3 bindings: `excamera._xc`.
//!
//! Thin by design: states and frames cross as opaque handles and numpy planes, and the
//! decode itself runs with the GIL released so Python threads (and the asyncio worker runtime)
//! keep running while a frame decodes.

mod ivf_loop;
mod quality;

use std::sync::Arc;

use numpy::{PyArray2, PyArrayMethods, PyReadonlyArray2};
use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use xc::decoder::decode_frame as xc_decode_frame;
use xc::decoder::Decoder as XcDecoder;
use xc::encoder::rebase::{reencode_chunk as xc_reencode_chunk, FirstFrameQuality, ReencodeOpts};
use xc::encoder::{
    encode_frame as xc_encode_frame, source_from_i420, source_from_planes, EncodeParams, Speed,
};
use xc::frame::{Frame, Plane};
use xc::state::DecoderState;

create_exception!(_xc, DecodeError, PyValueError, "A VP8 frame could not be decoded.");
create_exception!(_xc, StateError, PyValueError, "A serialized decoder state is invalid.");
create_exception!(_xc, EncodeError, PyValueError, "A frame could not be encoded.");

/// An immutable VP8 decoder state (reference frames, probabilities, segmentation, filter deltas).
#[pyclass(name = "State", module = "excamera._xc", frozen)]
#[derive(Clone)]
struct PyState {
    inner: Arc<DecoderState>,
}

/// Copy the display-size region of a plane into a fresh 2-D numpy array.
fn plane_to_numpy<'py>(py: Python<'py>, p: &Plane, w: usize, h: usize) -> Bound<'py, PyArray2<u8>> {
    let mut out = Vec::with_capacity(w * h);
    for row in 0..h {
        out.extend_from_slice(&p.data[row * p.stride..row * p.stride + w]);
    }
    let arr = numpy::PyArray1::from_vec(py, out);
    arr.reshape([h, w]).expect("reshape of an exactly-sized buffer")
}

type Planes<'py> = (Bound<'py, PyArray2<u8>>, Bound<'py, PyArray2<u8>>, Bound<'py, PyArray2<u8>>);

fn frame_to_numpy<'py>(py: Python<'py>, f: &Frame) -> Planes<'py> {
    let (w, h) = (f.display_width, f.display_height);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    (
        plane_to_numpy(py, &f.y, w, h),
        plane_to_numpy(py, &f.u, cw, ch),
        plane_to_numpy(py, &f.v, cw, ch),
    )
}

#[pymethods]
impl PyState {
    /// A fresh state: no reference frames yet, default probabilities. Only a key frame decodes from it.
    #[new]
    fn new() -> Self {
        PyState { inner: Arc::new(DecoderState::default()) }
    }

    /// Load a serialized state, checking its magic, version, sizes and length.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        DecoderState::deserialize(data)
            .map(|s| PyState { inner: Arc::new(s) })
            .map_err(|e| StateError::new_err(e.to_string()))
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes = py.allow_threads(|| self.inner.serialize());
        PyBytes::new(py, &bytes)
    }

    /// A short, stable identifier of the state's content (16 hex digits).
    #[getter]
    fn hash(&self) -> String {
        format!("{:016x}", self.inner.content_hash())
    }

    #[getter]
    fn width(&self) -> usize {
        self.inner.width as usize
    }

    #[getter]
    fn height(&self) -> usize {
        self.inner.height as usize
    }

    /// The (Y, U, V) planes of reference "last", "golden" or "altref", or None before any key frame.
    fn reference<'py>(&self, py: Python<'py>, which: &str) -> PyResult<Option<Planes<'py>>> {
        let frame = match which {
            "last" => &self.inner.last,
            "golden" => &self.inner.golden,
            "altref" | "alt" => &self.inner.altref,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown reference {other:?}: expected last, golden or altref"
                )))
            }
        };
        Ok(frame.as_deref().map(|f| frame_to_numpy(py, f)))
    }

    fn __eq__(&self, other: &PyState) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.serialize() == other.inner.serialize()
    }

    fn __repr__(&self) -> String {
        format!("<xc State {}x{} {:016x}>", self.width(), self.height(), self.inner.content_hash())
    }
}

/// Decode one compressed frame against `state`. Returns (new_state, planes or None when the
/// frame is not shown). `state` itself is not changed.
#[pyfunction]
fn decode_frame<'py>(
    py: Python<'py>,
    state: &PyState,
    data: &[u8],
) -> PyResult<(PyState, Option<Planes<'py>>)> {
    let inner = state.inner.clone();
    let data = data.to_vec();
    let (next, shown) = py
        .allow_threads(move || xc_decode_frame(&inner, &data))
        .map_err(|e| DecodeError::new_err(e.to_string()))?;
    let planes = shown.as_ref().map(|f| frame_to_numpy(py, f));
    Ok((PyState { inner: Arc::new(next) }, planes))
}

/// A stream decoder: owns its state and recycles reference buffers no longer in use, which
/// makes decoding a stream in order faster than chaining `decode_frame` calls.
#[pyclass(name = "StreamDecoder", module = "excamera._xc")]
struct PyStreamDecoder {
    inner: Option<XcDecoder>,
    /// The last frame `decode_y4m` reported shown, until `write_shown` writes it or the next
    /// decode starts (dropped first, so the decoder can recycle its buffer).
    shown: Option<Arc<Frame>>,
}

impl PyStreamDecoder {
    /// Decode one frame with the GIL released; on an error the decoder keeps its state.
    fn decode_frame(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<Option<Arc<Frame>>> {
        self.shown = None;
        let mut dec = self.inner.take().expect("decoder present between calls");
        let (dec, result) = py.allow_threads(move || {
            let r = dec.decode(data);
            (dec, r)
        });
        self.inner = Some(dec);
        result.map_err(|e| DecodeError::new_err(e.to_string()))
    }
}

/// What `StreamDecoder.decode_ivf_to` returns: frames read, frames shown, an error line, and a
/// frame of another size (index, width, height).
type IvfLoopResult = (u64, u64, Option<String>, Option<(u64, usize, usize)>);

/// A shown frame's display (width, height) and, when asked for, its Y4M frame record.
type ShownRecord<'py> = (usize, usize, Option<Bound<'py, PyBytes>>);

/// What starts each frame of a Y4M stream.
const Y4M_FRAME: &[u8] = b"FRAME\n";

/// Bytes of a display-size I420 picture (chroma rounded up, as `Frame::to_i420` lays it out).
fn i420_len(w: usize, h: usize) -> usize {
    w * h + 2 * w.div_ceil(2) * h.div_ceil(2)
}

/// The rows of `Frame::to_i420`, in order: display-size Y, then U, then V.
fn i420_rows(f: &Frame) -> impl Iterator<Item = &[u8]> {
    let (w, h) = (f.display_width, f.display_height);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    [(&f.y, w, h), (&f.u, cw, ch), (&f.v, cw, ch)]
        .into_iter()
        .flat_map(|(p, pw, ph)| p.data.chunks(p.stride).take(ph).map(move |row| &row[..pw]))
}

/// A Y4M frame record (`FRAME\n` and `Frame::to_i420`) as a new bytes object, written once.
///
/// pyo3's `PyBytes::new_with` zero-fills the buffer before handing it out, a second pass
/// over every output byte (1.4 MB a frame at 1280x720); this writes each byte once instead.
fn y4m_record<'py>(py: Python<'py>, f: &Frame) -> PyResult<Bound<'py, PyBytes>> {
    let len = Y4M_FRAME.len() + i420_len(f.display_width, f.display_height);
    // SAFETY: with a null source, PyBytes_FromStringAndSize allocates an uninitialized bytes
    // object of `len` bytes and returns a new (owned) reference, or null with the error set,
    // which `from_owned_ptr_or_err` turns into `Err`. The GIL is held (`py`).
    let obj = unsafe {
        let size = len as pyo3::ffi::Py_ssize_t;
        let ptr = pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), size);
        Bound::from_owned_ptr_or_err(py, ptr)?.downcast_into_unchecked::<PyBytes>()
    };
    // SAFETY: the object was just made (nothing else can see it yet) and is a bytes object,
    // whose buffer holds `len` bytes.
    let buf: *mut u8 = unsafe { pyo3::ffi::PyBytes_AsString(obj.as_ptr()).cast() };
    let mut at = 0;
    for part in std::iter::once(Y4M_FRAME).chain(i420_rows(f)) {
        // `i420_len` counts exactly these rows; checked so a mistake panics, never overruns.
        assert!(at + part.len() <= len, "Y4M record longer than its buffer");
        // SAFETY: `at + part.len() <= len` (checked above); `part` is an initialized slice of
        // a frame owned elsewhere, so it cannot overlap the new buffer.
        unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), buf.add(at), part.len()) };
        at += part.len();
    }
    // Every byte written, so the object is never handed out with uninitialized bytes.
    assert_eq!(at, len, "Y4M record shorter than its buffer");
    Ok(obj)
}

/// Write `prefix` (if not empty) and `f` to `fd` (its Y4M record with `y4m`, else its I420
/// planes) with vectored writes from the frame's own rows, rows that lie end to end in the
/// plane merged into one slice.
///
/// Building a bytes object instead costs a copy of every output byte into memory that is new
/// each frame (1.4 MB at 1280x720: page faults and clearing, about 9% of a whole decode).
fn write_frame(fd: i32, prefix: &[u8], f: &Frame, y4m: bool) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    use std::os::fd::FromRawFd;

    let mut parts: Vec<&[u8]> = vec![prefix];
    if y4m {
        parts.push(Y4M_FRAME);
    }
    let (w, h) = (f.display_width, f.display_height);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    for (p, pw, ph) in [(&f.y, w, h), (&f.u, cw, ch), (&f.v, cw, ch)] {
        if p.stride == pw {
            parts.push(&p.data[..pw * ph]);
        } else {
            parts.extend(p.data.chunks(p.stride).take(ph).map(|row| &row[..pw]));
        }
    }
    // An empty slice would make a write of only empty slices look like a stuck writer.
    parts.retain(|b| !b.is_empty());
    // SAFETY: the descriptor stays owned by the caller: the `File` is never dropped
    // (`ManuallyDrop`), so it is not closed here; a descriptor that is not open makes the
    // write fail with EBADF, which is returned.
    let mut file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    // The kernel takes at most IOV_MAX (1024) slices a call.
    for batch in parts.chunks(1024) {
        let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match file.write_vectored(rest) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The `OSError` Python itself would raise for `e`: `OSError(errno, strerror)`, which picks
/// the subclass (`BrokenPipeError`...) and has no "(os error N)" in its message.
fn os_error(py: Python<'_>, e: std::io::Error) -> PyErr {
    let Some(code) = e.raw_os_error() else {
        return PyErr::from(e);
    };
    match py.import("os").and_then(|os| os.call_method1("strerror", (code,))) {
        Ok(message) => PyOSError::new_err((code, message.unbind())),
        Err(_) => PyErr::from(e),
    }
}

#[pymethods]
impl PyStreamDecoder {
    #[new]
    #[pyo3(signature = (state=None))]
    fn new(state: Option<&PyState>) -> Self {
        let start = state.map(|s| (*s.inner).clone()).unwrap_or_default();
        PyStreamDecoder { inner: Some(XcDecoder::new(start)), shown: None }
    }

    /// Decode the next frame: its planes, or None when it is not shown. On an error the
    /// decoder keeps the state it had before the frame.
    fn decode<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Option<Planes<'py>>> {
        let shown = self.decode_frame(py, data)?;
        Ok(shown.as_deref().map(|f| frame_to_numpy(py, f)))
    }

    /// Decode the next frame for writing it out: None when it is not shown, else its display
    /// (width, height) and, with `record`, its Y4M frame record (`FRAME\n` and the display-size
    /// I420 planes) as bytes, else None. The planes go straight from the decoder's buffer into
    /// the bytes object: no numpy arrays, one copy, as a writer of the frame must make anyway.
    #[pyo3(signature = (data, record = true))]
    fn decode_y4m<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
        record: bool,
    ) -> PyResult<Option<ShownRecord<'py>>> {
        let Some(frame) = self.decode_frame(py, data)? else {
            return Ok(None);
        };
        let (w, h) = (frame.display_width, frame.display_height);
        let bytes = record.then(|| y4m_record(py, &frame));
        self.shown = Some(frame);
        Ok(Some((w, h, bytes.transpose()?)))
    }

    /// Write the frame the last `decode_y4m` reported shown to the open file descriptor `fd`,
    /// straight from the decoder's rows: its Y4M record with `y4m`, else its bare I420 planes.
    /// Nothing is buffered on the way, so whatever Python buffered for `fd` must be flushed
    /// first. A failed write raises the `OSError` of its errno (`BrokenPipeError` for EPIPE).
    fn write_shown(&mut self, py: Python<'_>, fd: i32, y4m: bool) -> PyResult<()> {
        let Some(frame) = self.shown.take() else {
            return Err(PyValueError::new_err("no shown frame to write: decode_y4m first"));
        };
        if fd < 0 {
            return Err(PyValueError::new_err(format!("invalid file descriptor {fd}")));
        }
        py.allow_threads(|| write_frame(fd, &[], &frame, y4m)).map_err(|e| os_error(py, e))
    }

    /// Read the IVF frames of the regular file open as `in_fd` from byte `offset` on (the frame
    /// there is number `first_index` of the file, which errors call `name`), decode them, and
    /// write each shown one to `out_fd` as `write_shown` does, `header` just before the first.
    /// Stops after `limit` frames (hidden ones included; 0: no limit), at the end of the file,
    /// at a damaged frame, or at a shown frame whose size is not `size`. Returns (frames read,
    /// frames shown, the error line of a damaged frame or None, (index, width, height) of a
    /// frame of another size or None); a failed read or write raises its `OSError`. The GIL is
    /// released for each frame, and signals are checked between frames.
    #[pyo3(signature = (in_fd, offset, first_index, name, out_fd, y4m, header, limit, size))]
    #[allow(clippy::too_many_arguments)]
    fn decode_ivf_to(
        &mut self,
        py: Python<'_>,
        in_fd: i32,
        offset: u64,
        first_index: u64,
        name: &str,
        out_fd: i32,
        y4m: bool,
        header: &[u8],
        limit: u64,
        size: Option<(usize, usize)>,
    ) -> PyResult<IvfLoopResult> {
        self.shown = None;
        if in_fd < 0 || out_fd < 0 {
            return Err(PyValueError::new_err(format!(
                "invalid file descriptor {}",
                in_fd.min(out_fd)
            )));
        }
        let job =
            ivf_loop::Job { in_fd, offset, first_index, name, out_fd, y4m, header, limit, size };
        let dec = self.inner.as_mut().expect("decoder present between calls");
        let (read, shown, stop) = ivf_loop::run(py, dec, &job)?.map_err(|e| os_error(py, e))?;
        Ok(match stop {
            None => (read, shown, None, None),
            Some(ivf_loop::Stop::Error(line)) => (read, shown, Some(line), None),
            Some(ivf_loop::Stop::Resized { index, w, h }) => {
                (read, shown, None, Some((index, w, h)))
            }
        })
    }

    /// The current state (a snapshot: later decodes do not change it).
    #[getter]
    fn state(&self) -> PyState {
        let dec = self.inner.as_ref().expect("decoder present between calls");
        PyState { inner: Arc::new(dec.state().clone()) }
    }
}

/// Parse a speed name as the CLI spells it.
fn parse_speed(speed: &str) -> PyResult<Speed> {
    match speed {
        "best" => Ok(Speed::Best),
        "good" => Ok(Speed::Good),
        "good-split" => Ok(Speed::GoodSplit),
        "good-refs" => Ok(Speed::GoodRefs),
        "rt" | "realtime" => Ok(Speed::Realtime),
        other => Err(EncodeError::new_err(format!(
            "unknown speed {other:?}: expected best, good, good-split, good-refs or rt"
        ))),
    }
}

/// Display-size I420 bytes from three numpy planes, checking their shapes agree.
fn planes_to_i420(
    y: &PyReadonlyArray2<'_, u8>,
    u: &PyReadonlyArray2<'_, u8>,
    v: &PyReadonlyArray2<'_, u8>,
) -> PyResult<(usize, usize, Vec<u8>)> {
    let (y, u, v) = (y.as_array(), u.as_array(), v.as_array());
    let (h, w) = y.dim();
    let (ch, cw) = (h.div_ceil(2), w.div_ceil(2));
    if u.dim() != (ch, cw) || v.dim() != (ch, cw) {
        return Err(EncodeError::new_err(format!(
            "chroma planes are {:?} and {:?}, expected ({ch}, {cw}) for a {w}x{h} picture",
            u.dim(),
            v.dim()
        )));
    }
    let mut out = Vec::with_capacity(w * h + 2 * cw * ch);
    for plane in [y, u, v] {
        // A C-contiguous plane (numpy's usual layout) is one slice copy; ndarray's element
        // iterator, which any other layout needs, costs several times more per pixel.
        match plane.as_slice() {
            Some(s) => out.extend_from_slice(s),
            None => out.extend(plane.iter().copied()),
        }
    }
    Ok((w, h, out))
}

/// The codec's padded source picture from three numpy planes at display size: C-contiguous
/// planes (numpy's usual layout) are copied once, straight into the padded planes; others go
/// through display-size I420 bytes first.
fn source_frame(
    y: &PyReadonlyArray2<'_, u8>,
    u: &PyReadonlyArray2<'_, u8>,
    v: &PyReadonlyArray2<'_, u8>,
) -> PyResult<Frame> {
    let to_err = |e: xc::encoder::EncodeError| EncodeError::new_err(e.to_string());
    let (h, w) = y.as_array().dim();
    match (y.as_slice(), u.as_slice(), v.as_slice()) {
        (Ok(ys), Ok(us), Ok(vs))
            if u.as_array().dim() == (h.div_ceil(2), w.div_ceil(2))
                && v.as_array().dim() == (h.div_ceil(2), w.div_ceil(2)) =>
        {
            source_from_planes(w, h, [ys, us, vs]).map_err(to_err)
        }
        _ => {
            let (w, h, i420) = planes_to_i420(y, u, v)?;
            source_from_i420(w, h, &i420).map_err(to_err)
        }
    }
}

/// Encode one picture (numpy planes Y, U, V at display size) against `state`.
///
/// Returns (frame bytes, the state every decoder reaches after them, the reconstructed planes).
/// The encode runs with the GIL released. Inter frames refresh only "last" unless told
/// otherwise; key frames refresh all three references.
#[pyfunction]
#[pyo3(signature = (state, y, u, v, *, key_frame, qindex, speed = "good", refresh_golden = None,
                    refresh_altref = None, loop_filter_level = None))]
#[allow(clippy::too_many_arguments)]
fn encode_frame<'py>(
    py: Python<'py>,
    state: &PyState,
    y: PyReadonlyArray2<'py, u8>,
    u: PyReadonlyArray2<'py, u8>,
    v: PyReadonlyArray2<'py, u8>,
    key_frame: bool,
    qindex: u8,
    speed: &str,
    refresh_golden: Option<bool>,
    refresh_altref: Option<bool>,
    loop_filter_level: Option<u8>,
) -> PyResult<(Bound<'py, PyBytes>, PyState, Planes<'py>)> {
    if qindex > 127 {
        return Err(EncodeError::new_err(format!("qindex {qindex} is out of range 0..=127")));
    }
    if loop_filter_level.is_some_and(|l| l > 63) {
        return Err(EncodeError::new_err("loop filter level is out of range 0..=63"));
    }
    let speed = parse_speed(speed)?;
    let source = source_frame(&y, &u, &v)?;
    let base = if key_frame { EncodeParams::key(qindex) } else { EncodeParams::inter(qindex) };
    let params = EncodeParams {
        speed,
        refresh_golden: refresh_golden.unwrap_or(base.refresh_golden),
        refresh_altref: refresh_altref.unwrap_or(base.refresh_altref),
        loop_filter_level,
        ..base
    };
    let inner = state.inner.clone();
    let encoded = py
        .allow_threads(move || xc_encode_frame(&inner, &source, &params))
        .map_err(|e| EncodeError::new_err(e.to_string()))?;
    let planes = frame_to_numpy(py, &encoded.recon);
    Ok((PyBytes::new(py, &encoded.data), PyState { inner: Arc::new(encoded.state) }, planes))
}

type PlaneTriple<'py> =
    (PyReadonlyArray2<'py, u8>, PyReadonlyArray2<'py, u8>, PyReadonlyArray2<'py, u8>);

/// Re-encode (rebase) a chunk: `pred_frames` (decodable from `pred_state`, or from a fresh
/// state when None) re-encoded to decode from `input_state`, toward `pictures` (one (Y, U, V)
/// tuple per shown frame). `speed` is the first frame's encoder effort (Rust
/// `ReencodeOpts::first_frame_speed`); `keep_golden`, `last_refreshes_all` and `choose_refs`
/// are `ReencodeOpts::first_frame_keeps_golden`, `last_frame_refresh_all` and `choose_refs`;
/// `key_frame_in_full`, `static_key_weight` and `redecide_first_frame` are `ReencodeOpts`'s,
/// `golden_to_altref` its `first_frame_golden_to_altref`, `redecide_later` (a speed, or None)
/// its `redecide_later_frames`, `seeded_first_frame` its `seeded_first_frame`.
/// Returns (frames, final state, content hash of
/// `input_state`).
/// Runs with the GIL released.
#[pyfunction]
#[pyo3(signature = (input_state, pred_frames, pred_state, pictures, *, kf_q_weight = None,
                    s_ac_qi = None, reencode_first_frame = false, fix_prob_tables = false,
                    speed = "rt", keep_golden = false, last_refreshes_all = true,
                    choose_refs = false, activity_rd = false, kf_weight_by_content = false,
                    key_frame_in_full = false, key_floored = false, static_key_weight = None,
                    redecide_first_frame = false, golden_to_altref = false,
                    redecide_later = None, seeded_first_frame = false))]
#[allow(clippy::too_many_arguments)]
fn reencode_chunk<'py>(
    py: Python<'py>,
    input_state: &PyState,
    pred_frames: Vec<Vec<u8>>,
    pred_state: Option<PyState>,
    pictures: Vec<PlaneTriple<'py>>,
    kf_q_weight: Option<f64>,
    s_ac_qi: Option<u8>,
    reencode_first_frame: bool,
    fix_prob_tables: bool,
    speed: &str,
    keep_golden: bool,
    last_refreshes_all: bool,
    choose_refs: bool,
    activity_rd: bool,
    kf_weight_by_content: bool,
    key_frame_in_full: bool,
    key_floored: bool,
    static_key_weight: Option<f64>,
    redecide_first_frame: bool,
    golden_to_altref: bool,
    redecide_later: Option<&str>,
    seeded_first_frame: bool,
) -> PyResult<(Vec<Bound<'py, PyBytes>>, PyState, u64)> {
    // A weight selects alfalfa's weighted first-frame quantizer; without one the first frame's
    // quality is matched to the prediction stream's key frame (the codec's default).
    let defaults = ReencodeOpts::default();
    let opts = ReencodeOpts {
        kf_q_weight: kf_q_weight.unwrap_or(defaults.kf_q_weight),
        first_frame_quality: match kf_q_weight {
            Some(_) => FirstFrameQuality::Weighted,
            None => defaults.first_frame_quality,
        },
        s_ac_qi,
        reencode_first_frame,
        fix_prob_tables,
        first_frame_speed: parse_speed(speed)?,
        first_frame_keeps_golden: keep_golden,
        last_frame_refresh_all: last_refreshes_all,
        choose_refs,
        activity_rd,
        kf_weight_by_content,
        key_frame_in_full,
        key_floored,
        static_key_weight,
        redecide_first_frame,
        first_frame_golden_to_altref: golden_to_altref,
        redecide_later_frames: redecide_later.map(parse_speed).transpose()?,
        seeded_first_frame,
        ..defaults
    };
    let sources =
        pictures.iter().map(|(y, u, v)| source_frame(y, u, v)).collect::<PyResult<Vec<_>>>()?;
    let input = input_state.inner.clone();
    let pred_initial = pred_state.map(|s| s.inner);
    let chunk = py
        .allow_threads(move || {
            xc_reencode_chunk(&input, &pred_frames, pred_initial.as_deref(), &sources, &opts)
        })
        .map_err(|e| EncodeError::new_err(e.to_string()))?;
    let frames = chunk.frames.iter().map(|f| PyBytes::new(py, f)).collect();
    Ok((frames, PyState { inner: Arc::new(chunk.state) }, chunk.input_state_hash))
}

/// One frame's quality sums, as `excamera.metrics` defines them: `((sse_y, sse_u, sse_v),
/// (samples_y, samples_u, samples_v), ssim)` of two `width` x `height` I420 pictures (any
/// bytes-like objects of exactly that size), with `ssim` the luma SSIM, None when the picture
/// is smaller than its 11x11 window. Runs with the GIL released.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn frame_quality(
    py: Python<'_>,
    source: PyBuffer<u8>,
    decoded: PyBuffer<u8>,
    width: usize,
    height: usize,
) -> PyResult<((u64, u64, u64), (usize, usize, usize), Option<f64>)> {
    if width == 0 || height == 0 || width > 1 << 16 || height > 1 << 16 {
        return Err(PyValueError::new_err(format!("frame_quality: bad size {width}x{height}")));
    }
    let want: usize = quality::i420_planes(width, height).iter().sum();
    for (name, buf) in [("source", &source), ("decoded", &decoded)] {
        if buf.item_count() != want {
            return Err(PyValueError::new_err(format!(
                "frame_quality: the {name} picture has {} bytes, a {width}x{height} I420 \
                 picture {want}",
                buf.item_count()
            )));
        }
    }
    let (a, b) = (source.to_vec(py)?, decoded.to_vec(py)?);
    let (sse, n, ssim) = py.allow_threads(move || quality::frame_sums(&a, &b, width, height));
    Ok(((sse[0], sse[1], sse[2]), (n[0], n[1], n[2]), ssim))
}

#[pymodule]
fn _xc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The codec's source hash (see build.rs): equal on both ends of every hand-off.
    m.add("BUILD_HASH", env!("XC_BUILD_HASH"))?;
    m.add("DecodeError", m.py().get_type::<DecodeError>())?;
    m.add("StateError", m.py().get_type::<StateError>())?;
    m.add("EncodeError", m.py().get_type::<EncodeError>())?;
    m.add_class::<PyState>()?;
    m.add_class::<PyStreamDecoder>()?;
    m.add_function(wrap_pyfunction!(decode_frame, m)?)?;
    m.add_function(wrap_pyfunction!(encode_frame, m)?)?;
    m.add_function(wrap_pyfunction!(reencode_chunk, m)?)?;
    m.add_function(wrap_pyfunction!(frame_quality, m)?)?;
    Ok(())
}
