//! The buffer pool, aware of submissions.
//!
//! A buffer is released when the last tensor (or op) holding it drops it. Ops keep the buffers
//! they bind alive until their commands are in the stream (`Encoder` owns them), so a buffer is
//! never released before the commands that use it are recorded. On release it is tagged with
//! the submission that will contain every command recorded so far (the pending one, or the
//! last one submitted when nothing is pending; see `Stream::release_tag`). Then:
//!
//! - For the host to write it (uploads, kernel parameters: `queue.write_buffer`, which lands
//!   before the next submission's commands, i.e. before commands recorded earlier that may
//!   still read the old contents), it is handed out only once that submission has completed.
//! - For the GPU to write it (op outputs and scratch), it is handed out at once: every command
//!   that uses it from then on is recorded after every command that used it before, in one
//!   queue, and wgpu orders the two with a barrier. This is stream-ordered reuse, as CUDA's
//!   `cudaFreeAsync` and PyTorch's caching allocator do on one stream; without it a chain of
//!   ops recorded into one submission would need a fresh buffer per op.
//!
//! With `GPU_LINALG_POISON_RELEASED=1` every released buffer is overwritten with NaN by a
//! command queued right after the commands recorded before its release: any use after release
//! reads NaN, and shows up as a wrong answer in the tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::device::{lock, Gpu};
use crate::error::Result;

/// Bytes of released buffers the pool keeps at most.
const POOL_CAP_BYTES: u64 = 1 << 30;

/// Bytes of a released buffer that poisoning overwrites at most.
const POISON_MAX_BYTES: u64 = 256 << 20;

/// Rounds a request up to its pool size class: multiples of 256 bytes below 4 KiB, then
/// steps of 1/16 of the next power of two (at most 12.5% waste).
pub(crate) fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256);
    if b <= 4096 {
        return b.div_ceil(256) * 256;
    }
    let step = (b.next_power_of_two() / 16).max(256);
    b.div_ceil(step) * step
}

/// The usages of every pooled storage buffer.
pub(crate) fn storage_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC
}

/// A released buffer and the submission after which it may be reused.
struct Released {
    after: u64,
    buffer: wgpu::Buffer,
}

#[derive(Default)]
struct PoolState {
    free: HashMap<(u64, u32), Vec<Released>>,
    bytes: u64,
    /// A buffer of NaNs that poisoning copies from (grown on demand).
    nan: Option<wgpu::Buffer>,
}

/// Released buffers kept for reuse, keyed by (size class, usage).
#[derive(Default)]
pub(crate) struct Pool {
    state: Mutex<PoolState>,
    poison: std::sync::OnceLock<bool>,
}

impl Pool {
    fn poisoning(&self) -> bool {
        *self
            .poison
            .get_or_init(|| std::env::var("GPU_LINALG_POISON_RELEASED").is_ok_and(|v| v == "1"))
    }

    /// A released buffer of `class` bytes and `usage` whose last submission is at most
    /// `completed` (`u64::MAX`: any, the oldest release first).
    fn take(&self, class: u64, usage: wgpu::BufferUsages, completed: u64) -> Option<wgpu::Buffer> {
        let mut st = lock(&self.state);
        let list = st.free.get_mut(&(class, usage.bits()))?;
        let i = list.iter().position(|r| r.after <= completed)?;
        let r = list.swap_remove(i);
        st.bytes -= class;
        Some(r.buffer)
    }

    /// Whether some buffer of this class is waiting for its submission to complete.
    fn has_waiting(&self, class: u64, usage: wgpu::BufferUsages) -> bool {
        lock(&self.state)
            .free
            .get(&(class, usage.bits()))
            .is_some_and(|l| !l.is_empty())
    }

    /// The buffer of NaNs, at least `bytes` long.
    fn nan_source(&self, device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
        let mut st = lock(&self.state);
        if let Some(b) = st.nan.as_ref().filter(|b| b.size() >= bytes) {
            return b.clone();
        }
        let size = bytes.next_power_of_two().max(4096);
        let b = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gpu-linalg poison"),
            size,
            usage: wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        if let Ok(mut view) = b.slice(..).get_mapped_range_mut() {
            let nans: Vec<u8> = (0..size / 4)
                .flat_map(|_| f32::NAN.to_bits().to_le_bytes())
                .collect();
            view.copy_from_slice(&nans);
        }
        b.unmap();
        st.nan = Some(b.clone());
        b
    }
}

impl Gpu {
    /// A buffer of at least `bytes` bytes (pooled), usable as storage or as a copy source/target,
    /// for the GPU to write: commands recorded from now on may write it (see the module docs).
    /// Buffers the host writes come from [`Gpu::upload`] (or [`Gpu::alloc_with`] with
    /// `host_writes`).
    pub fn alloc(self: &Arc<Self>, bytes: u64, what: &str) -> Result<Arc<GpuBuffer>> {
        self.alloc_with(bytes, storage_usage(), false, what)
    }

    /// A pooled buffer of at least `bytes` bytes with `usage`; with `host_writes`, one whose
    /// last submission has completed, so that a queue write into it cannot overtake a command
    /// that still reads its old contents.
    pub(crate) fn alloc_with(
        self: &Arc<Self>,
        bytes: u64,
        usage: wgpu::BufferUsages,
        host_writes: bool,
        what: &str,
    ) -> Result<Arc<GpuBuffer>> {
        self.check_alive()?;
        self.check_size(bytes, what)?;
        let mut class = size_class(bytes);
        if class > self.limits.max_buffer_size {
            class = bytes.max(4).div_ceil(4) * 4;
        }
        let ready = if host_writes {
            self.stream.completed()
        } else {
            u64::MAX
        };
        let mut reused = self.pool.take(class, usage, ready);
        if reused.is_none() && host_writes && self.pool.has_waiting(class, usage) {
            // Let finished submissions report themselves, then look again (never blocks).
            let _ = self.device.poll(wgpu::PollType::Poll);
            reused = self.pool.take(class, usage, self.stream.completed());
        }
        let buffer = match reused {
            Some(b) => b,
            None => self.scoped(&format!("allocating {bytes} bytes for {what}"), || {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("gpu-linalg"),
                    size: class,
                    usage,
                    mapped_at_creation: false,
                })
            })?,
        };
        Ok(Arc::new(GpuBuffer {
            buffer: Some(buffer),
            gpu: self.clone(),
            pooled: true,
        }))
    }

    /// Returns `buffer` to the pool, reusable once the submissions that may use it are done.
    fn release(&self, buffer: wgpu::Buffer) {
        let size = buffer.size();
        if self.pool.poisoning() && buffer.usage().contains(wgpu::BufferUsages::COPY_DST) {
            let nan = self
                .pool
                .nan_source(&self.device, size.min(POISON_MAX_BYTES));
            self.stream
                .record_copy(&self.device, &nan, &buffer, size.min(POISON_MAX_BYTES));
        }
        let after = self.stream.release_tag();
        let mut st = lock(&self.pool.state);
        if st.bytes + size > POOL_CAP_BYTES {
            return;
        }
        st.bytes += size;
        st.free
            .entry((size, buffer.usage().bits()))
            .or_default()
            .push(Released { after, buffer });
    }

    /// Uploads `data` into a pooled buffer no submitted or recorded command still uses, so the
    /// queue's write lands before every command that reads it and after every earlier use.
    pub fn upload(self: &Arc<Self>, data: &[u8], what: &str) -> Result<Arc<GpuBuffer>> {
        let buf = self.alloc_with(data.len() as u64, storage_usage(), true, what)?;
        if !data.is_empty() {
            self.queue.write_buffer(buf.buffer(), 0, data);
        }
        Ok(buf)
    }

    /// Overwrites the start of `buf`, a buffer recorded commands may already use, with `data`,
    /// in program order: whatever is recorded before runs first.
    pub fn write(&self, buf: &GpuBuffer, data: &[u8]) -> Result<()> {
        self.stream.write_in_order(self, buf.buffer(), data)
    }
}

/// A GPU buffer owned by tensors and ops; returns to the device's pool when the last one drops.
pub(crate) struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    pub gpu: Arc<Gpu>,
    pooled: bool,
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({} bytes)", self.buffer().size())
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            if self.pooled {
                self.gpu.release(b);
            }
        }
    }
}

impl GpuBuffer {
    /// Wraps an application's buffer (never pooled).
    pub(crate) fn foreign(buffer: wgpu::Buffer, gpu: Arc<Gpu>) -> GpuBuffer {
        GpuBuffer {
            buffer: Some(buffer),
            gpu,
            pooled: false,
        }
    }

    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        // The option is only emptied in `drop`.
        match &self.buffer {
            Some(b) => b,
            None => unreachable!("GpuBuffer used after drop"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_round_up_little() {
        assert_eq!(size_class(1), 256);
        assert_eq!(size_class(4096), 4096);
        assert_eq!(size_class(5000), 5120);
        assert_eq!(size_class(4097), 4608);
        for b in [4097u64, 100_000, 1 << 20, (1 << 27) + 3] {
            let c = size_class(b);
            assert!(
                c >= b && (c as f64) <= b as f64 * 1.125 + 256.0,
                "{b} -> {c}"
            );
        }
    }
}
