//! Binding windows (a tensor larger than one storage binding is bound a window at a time) and
//! grid folding (dispatches cap at `max_compute_workgroups_per_dimension` per dimension).

use super::device::Gpu;
use std::sync::Arc;

use super::pool::GpuBuffer;
use super::stream::Bind;
use crate::error::{Error, Result};

/// A window of a buffer bound as one operand: a byte offset aligned to [`window_align`], a
/// size within the binding limit, and the element offset, inside the window, of the first
/// element a dispatch touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// Byte offset of the binding (a multiple of the alignment).
    pub offset: u64,
    /// Bytes bound (at least 4).
    pub size: u64,
    /// Element offset of the first element used, inside the window.
    pub elem_off: usize,
}

impl Window {
    /// The whole buffer prefix of `bytes` bytes from byte 0.
    pub(crate) fn whole(bytes: u64) -> Window {
        Window {
            offset: 0,
            size: bytes.max(4),
            elem_off: 0,
        }
    }

    /// The smallest window starting at a multiple of `align` that covers elements
    /// `start..end`.
    pub(crate) fn span(start: usize, end: usize, align: u64) -> Window {
        let s = (start * 4) as u64;
        let offset = s / align * align;
        Window {
            offset,
            size: ((end * 4) as u64 - offset).max(4),
            elem_off: ((s - offset) / 4) as usize,
        }
    }

    /// [`Window::span`] with its size rounded up to 16 bytes where the buffer of `buf_bytes`
    /// bytes allows (so that vec4 views of it stay whole).
    pub(crate) fn covering(start: usize, end: usize, align: u64, buf_bytes: u64) -> Window {
        let w = Window::span(start, end, align);
        let size = w
            .size
            .next_multiple_of(16)
            .min(buf_bytes.saturating_sub(w.offset))
            .max(w.size);
        Window { size, ..w }
    }

    /// The binding of this window of `buf`.
    pub(crate) fn of<'a>(&self, buf: &'a Arc<GpuBuffer>) -> Bind<'a> {
        Bind::Range(buf, self.offset, self.size)
    }

    /// Whether the window can be bound as `array<vec4<f32>>` read from its element offset.
    pub(crate) fn vec4_ok(&self) -> bool {
        self.size.is_multiple_of(16) && self.elem_off.is_multiple_of(4)
    }
}

/// Alignment of window offsets: the device's `min_storage_buffer_offset_alignment`, at least
/// 16 bytes so that vec4 views of a window stay vec4-aligned (alignments are powers of two).
pub(crate) fn window_align(gpu: &Gpu) -> u64 {
    u64::from(gpu.limits.min_storage_buffer_offset_alignment).max(16)
}

/// Elements a window may span so that, with its alignment slack and rounding, it still fits one
/// storage binding.
pub(crate) fn window_budget(gpu: &Gpu) -> usize {
    let limit = gpu.limits.max_storage_buffer_binding_size;
    (limit.saturating_sub(window_align(gpu) + 16) / 4).max(1) as usize
}

/// Checks that every window fits one binding (the split guarantees it; this turns a slip into
/// an error naming the limit instead of a validation error).
pub(crate) fn check_windows(gpu: &Gpu, windows: &[Window], what: &str) -> Result<()> {
    for w in windows {
        gpu.check_binding(w.size, what)?;
    }
    Ok(())
}

/// The 2-D grid (x, y) that covers `groups` workgroups within the per-dimension limit, as
/// square as the limit allows along y. Kernels recover the 1-D index as `y·x_count + x` and
/// guard it against their count.
pub(crate) fn fold_grid(gpu: &Gpu, groups: usize, what: &str) -> Result<(u32, u32)> {
    let limit = gpu.limits.max_compute_workgroups_per_dimension.max(1) as usize;
    let y = groups.div_ceil(limit);
    let x = groups.div_ceil(y.max(1));
    if y > limit {
        return Err(Error::InvalidArgument(format!(
            "{what}: {groups} workgroups do not fit a {limit}×{limit} grid"
        )));
    }
    Ok((x as u32, y as u32))
}
