//! The command stream: ops record their passes into command buffers that wait in one pending
//! list per device, and the list is submitted in one `queue.submit`
//!
//! - by any readback (which must see the results),
//! - by `Context::flush` and `Context::synchronize`,
//! - when [`MAX_PENDING_DISPATCHES`] dispatches or [`MAX_PENDING_BYTES`] bound bytes are
//!   pending, so that no submission grows without bound and a display watchdog never sees one
//!   huge command buffer,
//! - after every op under [`SubmitMode::PerOp`].
//!
//! Threads that share a context share its stream: a readback on one thread submits what the
//! others recorded too, which is always correct (they only wait less). An op's command buffer
//! is finished inside its own error scope and enters the stream only when it is valid, so a
//! validation error is reported by the op that caused it, never by another thread's submit.
//!
//! Kernel parameters are sub-allocated from one uniform buffer per submission (a 256-byte
//! aligned slot per use); the host copy is written once, just before the submit.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::device::{lock, Gpu};
use super::pipeline::Kernel;
use super::pool::GpuBuffer;
use crate::error::{Error, Result};

/// Pending dispatches at which the stream submits by itself.
pub const MAX_PENDING_DISPATCHES: u32 = 1024;

/// Pending bytes (the sizes of every binding of every pending dispatch) at which the stream
/// submits by itself.
pub const MAX_PENDING_BYTES: u64 = 1 << 30;

/// Bytes of one uniform sub-allocation buffer.
const UNIFORM_CHUNK: u64 = 64 << 10;

/// When ops are submitted to the GPU queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SubmitMode {
    /// Ops are recorded into the context's command stream, submitted together at the next
    /// readback, `flush`, `synchronize` or size threshold. The default.
    #[default]
    Stream,
    /// Every op is its own submission (`GPU_LINALG_SUBMIT=per-op`): slower, for comparison.
    PerOp,
}

impl SubmitMode {
    /// `GPU_LINALG_SUBMIT`: `per-op` or `stream`; `None` when unset or unknown.
    pub fn from_env() -> Option<SubmitMode> {
        match std::env::var("GPU_LINALG_SUBMIT").as_deref() {
            Ok("per-op") | Ok("per_op") | Ok("perop") => Some(SubmitMode::PerOp),
            Ok("stream") => Some(SubmitMode::Stream),
            _ => None,
        }
    }

    /// The default on a device of `backend`: the stream, except on wgpu's GL backend. GL runs
    /// a submission's commands while holding its one context lock, which other threads wait on
    /// for at most 6 s before wgpu-hal panics ("Could not lock adapter context"); one long
    /// submission of batched ops from one thread could then bring down another. Per-op
    /// submission keeps each hold to one op, as GL always had it.
    pub fn default_for(backend: wgpu::Backend) -> SubmitMode {
        match backend {
            wgpu::Backend::Gl => SubmitMode::PerOp,
            _ => SubmitMode::Stream,
        }
    }

    /// The name used in bench labels: `stream` or `per-op`.
    pub fn name(self) -> &'static str {
        match self {
            SubmitMode::Stream => "stream",
            SubmitMode::PerOp => "per-op",
        }
    }

    fn code(self) -> u8 {
        match self {
            SubmitMode::Stream => 0,
            SubmitMode::PerOp => 1,
        }
    }
}

/// Counts of GPU work, as [`crate::Context::gpu_counters`] reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuCounters {
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// `queue.submit` calls made.
    pub submits: u64,
}

impl std::ops::Sub for GpuCounters {
    type Output = GpuCounters;
    fn sub(self, rhs: GpuCounters) -> GpuCounters {
        GpuCounters {
            dispatches: self.dispatches.saturating_sub(rhs.dispatches),
            submits: self.submits.saturating_sub(rhs.submits),
        }
    }
}

thread_local! {
    static THREAD_DISPATCHES: Cell<u64> = const { Cell::new(0) };
    static THREAD_SUBMITS: Cell<u64> = const { Cell::new(0) };
}

/// What this thread has recorded and submitted so far, on every device: the difference around
/// an algorithm is its own count, whatever other threads do meanwhile.
pub fn thread_counters() -> GpuCounters {
    GpuCounters {
        dispatches: THREAD_DISPATCHES.with(Cell::get),
        submits: THREAD_SUBMITS.with(Cell::get),
    }
}

/// Runs `f` and returns what it spent on this thread (dispatches recorded, submissions made).
pub(crate) fn counted<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, GpuCounters)> {
    let before = thread_counters();
    let out = f()?;
    Ok((out, thread_counters() - before))
}

/// Timestamp queries around every compute pass encoded while `Context::time_gpu` runs:
/// query 0 at the start of the first pass, query 1 at the end of each (the last one wins).
pub(crate) struct Timer {
    pub set: wgpu::QuerySet,
    pub started: bool,
}

/// The host side of the current uniform sub-allocation buffer.
#[derive(Default)]
struct UniformArena {
    chunk: Option<Arc<GpuBuffer>>,
    host: Vec<u8>,
}

#[derive(Default)]
struct StreamState {
    pending: Vec<wgpu::CommandBuffer>,
    dispatches: u32,
    bytes: u64,
    uniforms: UniformArena,
}

/// A device's command stream (see the module docs).
pub(crate) struct Stream {
    state: Mutex<StreamState>,
    mode: AtomicU8,
    /// Sequence number of the last submission (the first is 1).
    submitted: AtomicU64,
    /// Sequence number of the last submission known to have completed on the GPU.
    completed: Arc<AtomicU64>,
    total_dispatches: AtomicU64,
    /// Wakes readbacks awaited by `read_async` without spinning: a thread that blocks in
    /// `device.poll` for each submission it is sent.
    poller: Mutex<Option<std::sync::mpsc::Sender<(wgpu::SubmissionIndex, u64)>>>,
    device: wgpu::Device,
    /// Wait by polling (wgpu's GL backend; see `device::wait_for`).
    polls: bool,
}

impl Stream {
    pub(crate) fn new(device: &wgpu::Device, mode: SubmitMode, backend: wgpu::Backend) -> Stream {
        Stream {
            polls: backend == wgpu::Backend::Gl,
            state: Mutex::new(StreamState::default()),
            mode: AtomicU8::new(mode.code()),
            submitted: AtomicU64::new(0),
            completed: Arc::new(AtomicU64::new(0)),
            total_dispatches: AtomicU64::new(0),
            poller: Mutex::new(None),
            device: device.clone(),
        }
    }

    /// The submission mode.
    pub(crate) fn mode(&self) -> SubmitMode {
        match self.mode.load(Ordering::Relaxed) {
            1 => SubmitMode::PerOp,
            _ => SubmitMode::Stream,
        }
    }

    pub(crate) fn set_mode(&self, mode: SubmitMode) {
        self.mode.store(mode.code(), Ordering::Relaxed);
    }

    /// The last submission known to have completed.
    pub(crate) fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// Everything submitted has completed (after a blocking wait for the whole queue).
    pub(crate) fn mark_all_done(&self) {
        self.completed
            .fetch_max(self.submitted.load(Ordering::Acquire), Ordering::AcqRel);
    }

    /// Sequence number of the last submission.
    pub(crate) fn submitted(&self) -> u64 {
        self.submitted.load(Ordering::Acquire)
    }

    /// How to wait for submission `idx` / `seq` on this stream's backend.
    pub(crate) fn wait_by(
        &self,
        idx: Option<wgpu::SubmissionIndex>,
        seq: u64,
    ) -> super::device::WaitBy<'_> {
        if self.polls {
            super::device::WaitBy::Polling {
                completed: &self.completed,
                seq,
            }
        } else {
            super::device::WaitBy::Blocking(idx)
        }
    }

    /// Device-wide counts.
    pub(crate) fn counters(&self) -> GpuCounters {
        GpuCounters {
            dispatches: self.total_dispatches.load(Ordering::Relaxed),
            submits: self.submitted.load(Ordering::Relaxed),
        }
    }

    /// The submission after which a buffer released now may be reused: the pending one when
    /// commands are waiting (they may use it), else the last one submitted.
    pub(crate) fn release_tag(&self) -> u64 {
        let st = lock(&self.state);
        let last = self.submitted.load(Ordering::Acquire);
        if st.pending.is_empty() && st.uniforms.host.is_empty() {
            last
        } else {
            last + 1
        }
    }

    /// Queues a copy of `bytes` bytes from `src` to `dst` after everything recorded so far.
    pub(crate) fn record_copy(
        &self,
        device: &wgpu::Device,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        bytes: u64,
    ) {
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("gpu-linalg poison"),
        });
        enc.copy_buffer_to_buffer(src, 0, dst, 0, bytes / 4 * 4);
        let cb = enc.finish();
        lock(&self.state).pending.push(cb);
    }

    /// Submits everything pending (`None` when nothing was). The uniform buffer that the
    /// submission used is returned, to be dropped once the stream is unlocked.
    fn submit_locked(
        &self,
        st: &mut StreamState,
        queue: &wgpu::Queue,
    ) -> (Option<(wgpu::SubmissionIndex, u64)>, Option<Arc<GpuBuffer>>) {
        let chunk = st.uniforms.chunk.take();
        if let Some(c) = &chunk {
            if !st.uniforms.host.is_empty() {
                queue.write_buffer(c.buffer(), 0, &st.uniforms.host);
            }
        }
        st.uniforms.host.clear();
        if st.pending.is_empty() && chunk.is_none() {
            return (None, None);
        }
        let idx = queue.submit(st.pending.drain(..));
        st.dispatches = 0;
        st.bytes = 0;
        let seq = self.submitted.fetch_add(1, Ordering::AcqRel) + 1;
        let completed = self.completed.clone();
        queue.on_submitted_work_done(move || {
            completed.fetch_max(seq, Ordering::AcqRel);
        });
        THREAD_SUBMITS.with(|c| c.set(c.get() + 1));
        (Some((idx, seq)), chunk)
    }

    /// Submits everything pending: (wgpu index, sequence number), `None` when nothing was.
    pub(crate) fn flush(&self, queue: &wgpu::Queue) -> Option<(wgpu::SubmissionIndex, u64)> {
        let (idx, chunk) = {
            let mut st = lock(&self.state);
            self.submit_locked(&mut st, queue)
        };
        drop(chunk);
        idx
    }

    /// Adds a finished, valid command buffer; submits when the thresholds or the mode say so.
    fn push(&self, queue: &wgpu::Queue, cb: wgpu::CommandBuffer, dispatches: u32, bytes: u64) {
        self.total_dispatches
            .fetch_add(u64::from(dispatches), Ordering::Relaxed);
        let chunk = {
            let mut st = lock(&self.state);
            st.pending.push(cb);
            st.dispatches += dispatches;
            st.bytes += bytes;
            let due = self.mode() == SubmitMode::PerOp
                || st.dispatches >= MAX_PENDING_DISPATCHES
                || st.bytes >= MAX_PENDING_BYTES;
            if due {
                self.submit_locked(&mut st, queue).1
            } else {
                None
            }
        };
        drop(chunk);
    }

    /// Adds `cb` (a copy into a staging buffer) and submits at once: the index to wait for.
    fn push_and_submit(
        &self,
        queue: &wgpu::Queue,
        cb: wgpu::CommandBuffer,
    ) -> (wgpu::SubmissionIndex, u64) {
        let (idx, chunk) = {
            let mut st = lock(&self.state);
            st.pending.push(cb);
            self.submit_locked(&mut st, queue)
        };
        drop(chunk);
        match idx {
            Some(i) => i,
            None => unreachable!("a submission with one command buffer was empty"),
        }
    }

    /// Writes `data` at the start of `buffer` after every command recorded so far.
    pub(crate) fn write_in_order(
        &self,
        gpu: &Gpu,
        buffer: &wgpu::Buffer,
        data: &[u8],
    ) -> Result<()> {
        let chunk = {
            let mut st = lock(&self.state);
            // A queue write lands before the next submission's commands: submit what is
            // recorded first, so that it reads the old contents.
            let chunk = if st.pending.is_empty() {
                None
            } else {
                self.submit_locked(&mut st, &gpu.queue).1
            };
            gpu.queue.write_buffer(buffer, 0, data);
            chunk
        };
        drop(chunk);
        Ok(())
    }

    /// A slot of the current uniform buffer holding `bytes`.
    fn uniform_slot(&self, gpu: &Arc<Gpu>, bytes: &[u8]) -> Result<Uniform> {
        let align = u64::from(gpu.limits.min_uniform_buffer_offset_alignment).max(16);
        let size = (bytes.len() as u64).next_multiple_of(16).max(16);
        if size > UNIFORM_CHUNK {
            return Err(Error::InvalidArgument(format!(
                "kernel parameters of {size} bytes exceed the {UNIFORM_CHUNK}-byte uniform slot"
            )));
        }
        loop {
            let mut st = lock(&self.state);
            if let Some(chunk) = st.uniforms.chunk.clone() {
                let offset = (st.uniforms.host.len() as u64).next_multiple_of(align);
                if offset + size <= UNIFORM_CHUNK {
                    st.uniforms.host.resize(offset as usize, 0);
                    st.uniforms.host.extend_from_slice(bytes);
                    st.uniforms.host.resize((offset + size) as usize, 0);
                    return Ok(Uniform {
                        buf: chunk,
                        offset,
                        size,
                    });
                }
                // Full: this buffer's contents are final; write them now (the write lands
                // before the next submission, which is the first that can use any slot).
                gpu.queue.write_buffer(chunk.buffer(), 0, &st.uniforms.host);
                st.uniforms.host.clear();
                let old = st.uniforms.chunk.take();
                drop(st);
                drop(old);
                continue;
            }
            drop(st);
            let chunk = gpu.alloc_with(
                UNIFORM_CHUNK,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                true,
                "kernel parameters",
            )?;
            let mut st = lock(&self.state);
            if st.uniforms.chunk.is_none() {
                st.uniforms.host.clear();
                st.uniforms.chunk = Some(chunk);
            }
        }
    }

    /// Sends `idx` to the poller thread, which blocks in `device.poll` until it is done (so
    /// that the map callbacks of awaited readbacks fire without anyone spinning).
    fn wake_when_done(&self, idx: wgpu::SubmissionIndex, seq: u64) {
        let mut slot = lock(&self.poller);
        let tx = slot.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::channel::<(wgpu::SubmissionIndex, u64)>();
            let device = self.device.clone();
            let completed = self.completed.clone();
            let polls = self.polls;
            std::thread::Builder::new()
                .name("gpu-linalg poller".into())
                .spawn(move || {
                    while let Ok((idx, seq)) = rx.recv() {
                        let by = if polls {
                            super::device::WaitBy::Polling {
                                completed: &completed,
                                seq,
                            }
                        } else {
                            super::device::WaitBy::Blocking(Some(idx))
                        };
                        let _ = super::device::wait_for(&device, by);
                    }
                })
                .map(|_| ())
                .unwrap_or(());
            tx
        });
        if tx.send((idx, seq)).is_err() {
            // The poller could not start: poll once here; the awaiting task then polls too.
            let _ = self.device.poll(wgpu::PollType::Poll);
        }
    }
}

/// Records and submits one pass of `kernel` over `groups` workgroups (a 1-D grid folded into
/// 2-D), with `params` bound at binding 0 and `entries` at theirs.
pub(crate) fn run_pass<P: super::params::KernelParams>(
    gpu: &Arc<Gpu>,
    kernel: &Kernel,
    params: &P,
    entries: &[(u32, Bind<'_>)],
    groups: usize,
    what: &str,
) -> Result<()> {
    let (gx, gy) = super::window::fold_grid(gpu, groups, what)?;
    let mut enc = gpu.encoder(what);
    let u = enc.params(params)?;
    let mut all = Vec::with_capacity(entries.len() + 1);
    all.push((0, Bind::Params(&u)));
    all.extend_from_slice(entries);
    let bg = enc.bind(kernel, &all);
    enc.dispatch(kernel, &bg, (gx, gy, 1));
    enc.submit()
}

/// A slot of kernel parameters in the stream's uniform buffer.
pub(crate) struct Uniform {
    buf: Arc<GpuBuffer>,
    offset: u64,
    size: u64,
}

/// One binding of a bind group.
#[derive(Clone, Copy)]
pub(crate) enum Bind<'a> {
    /// The first `bytes` bytes (at least 4) of a buffer.
    Buffer(&'a Arc<GpuBuffer>, u64),
    /// `size` bytes from byte `offset` (a multiple of the storage offset alignment).
    Range(&'a Arc<GpuBuffer>, u64, u64),
    /// Kernel parameters.
    Params(&'a Uniform),
}

/// Records one op's commands. It owns every buffer it binds until its commands are in the
/// stream, so none of them returns to the pool before the commands that use it are recorded.
pub(crate) struct Encoder {
    gpu: Arc<Gpu>,
    enc: wgpu::CommandEncoder,
    keep: Vec<Arc<GpuBuffer>>,
    dispatches: u32,
    bytes: u64,
}

impl Bind<'_> {
    /// (buffer, byte offset, bytes) of the binding.
    fn resolve(&self) -> (&Arc<GpuBuffer>, u64, u64) {
        match *self {
            Bind::Buffer(buf, bytes) => (buf, 0, bytes.max(4)),
            Bind::Range(buf, offset, size) => (buf, offset, size.max(4)),
            Bind::Params(u) => (&u.buf, u.offset, u.size),
        }
    }
}

impl Gpu {
    /// The bind group of `kernel` (group 0) with `entries`. Whoever records commands that use
    /// it keeps the bound buffers alive until they are in the stream ([`Encoder::keep_bound`]).
    pub(crate) fn bind_group(
        &self,
        kernel: &Kernel,
        entries: &[(u32, Bind<'_>)],
    ) -> wgpu::BindGroup {
        let list: Vec<wgpu::BindGroupEntry<'_>> = entries
            .iter()
            .map(|(binding, b)| {
                let (buf, offset, size) = b.resolve();
                wgpu::BindGroupEntry {
                    binding: *binding,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: buf.buffer(),
                        offset,
                        size: wgpu::BufferSize::new(size),
                    }),
                }
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout,
            entries: &list,
        })
    }

    /// A uniform buffer holding `params`, one per slot of the device's uniform offset alignment:
    /// (buffer, slot stride in bytes). For parameters that many dispatches reuse.
    pub(crate) fn upload_params_array<P: super::params::KernelParams>(
        self: &Arc<Self>,
        params: &[P],
    ) -> Result<(Arc<GpuBuffer>, u64)> {
        let size = std::mem::size_of::<P>() as u64;
        let stride = size
            .next_multiple_of(u64::from(self.limits.min_uniform_buffer_offset_alignment).max(16));
        let mut bytes = vec![0u8; (stride * params.len() as u64).max(16) as usize];
        for (i, p) in params.iter().enumerate() {
            let at = i * stride as usize;
            bytes[at..at + size as usize].copy_from_slice(bytemuck::bytes_of(p));
        }
        let buf = self.alloc_with(
            bytes.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            true,
            "kernel parameters",
        )?;
        self.queue.write_buffer(buf.buffer(), 0, &bytes);
        Ok((buf, stride))
    }

    /// A new encoder for one op's commands.
    pub(crate) fn encoder(self: &Arc<Self>, what: &str) -> Encoder {
        Encoder {
            enc: self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) }),
            gpu: self.clone(),
            keep: Vec::new(),
            dispatches: 0,
            bytes: 0,
        }
    }

    /// Submits everything recorded so far on this device.
    pub(crate) fn flush(&self) -> Result<()> {
        self.check_alive()?;
        self.stream.flush(&self.queue);
        Ok(())
    }
}

impl Encoder {
    /// Kernel parameters `p` in a uniform slot (see [`super::params::KernelParams`]).
    pub(crate) fn params<P: super::params::KernelParams>(&mut self, p: &P) -> Result<Uniform> {
        let u = self
            .gpu
            .stream
            .uniform_slot(&self.gpu, bytemuck::bytes_of(p))?;
        Ok(u)
    }

    /// The bind group of `kernel` (group 0) with `entries` as (binding, resource); the
    /// encoder keeps every bound buffer.
    pub(crate) fn bind(&mut self, kernel: &Kernel, entries: &[(u32, Bind<'_>)]) -> wgpu::BindGroup {
        self.keep_bound(entries);
        self.bytes += entries.iter().map(|(_, b)| b.resolve().2).sum::<u64>();
        self.gpu.bind_group(kernel, entries)
    }

    /// Keeps `buf` alive until these commands are in the stream (for buffers bound by a bind
    /// group made once and used by several encoders).
    pub(crate) fn keep(&mut self, buf: &Arc<GpuBuffer>) {
        if !self.keep.iter().any(|k| Arc::ptr_eq(k, buf)) {
            self.keep.push(buf.clone());
        }
    }

    /// Keeps every buffer of `entries`.
    pub(crate) fn keep_bound(&mut self, entries: &[(u32, Bind<'_>)]) {
        for (_, b) in entries {
            self.keep(b.resolve().0);
        }
    }

    /// Begins a compute pass (with timestamp writes while a kernel timer is active).
    pub(crate) fn pass(&mut self) -> Pass<'_> {
        let writes = lock(&self.gpu.timer).as_mut().map(|t| {
            let begin = (!t.started).then_some(0);
            t.started = true;
            (t.set.clone(), begin)
        });
        let pass = match &writes {
            Some((set, begin)) => self.enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: *begin,
                    end_of_pass_write_index: Some(1),
                }),
            }),
            None => self
                .enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor::default()),
        };
        Pass {
            pass,
            dispatches: &mut self.dispatches,
        }
    }

    /// One pass with one dispatch of `kernel` over `grid` workgroups.
    pub(crate) fn dispatch(
        &mut self,
        kernel: &Kernel,
        group: &wgpu::BindGroup,
        grid: (u32, u32, u32),
    ) {
        let mut pass = self.pass();
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, group, &[]);
        pass.dispatch_workgroups(grid.0, grid.1, grid.2);
    }

    /// Copies `bytes` bytes between buffers, in order with the passes.
    #[cfg_attr(
        not(feature = "cli"),
        allow(dead_code, reason = "the bench's copy rows use it")
    )]
    pub(crate) fn copy(
        &mut self,
        src: &Arc<GpuBuffer>,
        src_offset: u64,
        dst: &Arc<GpuBuffer>,
        dst_offset: u64,
        bytes: u64,
    ) {
        self.keep(src);
        self.keep(dst);
        self.enc
            .copy_buffer_to_buffer(src.buffer(), src_offset, dst.buffer(), dst_offset, bytes);
    }

    /// Zeroes `bytes` bytes of `buf` from `offset`, in order with the passes.
    pub(crate) fn clear(&mut self, buf: &Arc<GpuBuffer>, offset: u64, bytes: u64) {
        self.keep(buf);
        self.enc.clear_buffer(buf.buffer(), offset, Some(bytes));
    }

    /// The raw encoder, for commands the helpers above do not cover (timestamp resolves).
    pub(crate) fn raw(&mut self) -> &mut wgpu::CommandEncoder {
        &mut self.enc
    }

    /// Finishes the commands inside their own error scope and adds them to the stream; a
    /// command buffer that fails validation is an `Err` here and never reaches the queue.
    pub(crate) fn submit(self) -> Result<()> {
        let Encoder {
            gpu,
            enc,
            keep,
            dispatches,
            bytes,
        } = self;
        let cb = gpu.scoped("recording commands", || enc.finish())?;
        THREAD_DISPATCHES.with(|c| c.set(c.get() + u64::from(dispatches)));
        gpu.stream.push(&gpu.queue, cb, dispatches, bytes);
        drop(keep);
        Ok(())
    }

    /// Finishes the commands and submits them with everything pending: the submission to wait
    /// for (readbacks).
    pub(crate) fn submit_now(self) -> Result<(wgpu::SubmissionIndex, u64)> {
        let Encoder { gpu, enc, keep, .. } = self;
        let cb = gpu.scoped("recording commands", || enc.finish())?;
        let idx = gpu.stream.push_and_submit(&gpu.queue, cb);
        drop(keep);
        Ok(idx)
    }
}

/// A compute pass that counts its dispatches; everything else is the wgpu pass.
pub(crate) struct Pass<'e> {
    pass: wgpu::ComputePass<'e>,
    dispatches: &'e mut u32,
}

impl Pass<'_> {
    /// Dispatches `x × y × z` workgroups (and counts the dispatch).
    pub(crate) fn dispatch_workgroups(&mut self, x: u32, y: u32, z: u32) {
        *self.dispatches += 1;
        self.pass.dispatch_workgroups(x, y, z);
    }
}

impl<'e> std::ops::Deref for Pass<'e> {
    type Target = wgpu::ComputePass<'e>;
    fn deref(&self) -> &Self::Target {
        &self.pass
    }
}

impl std::ops::DerefMut for Pass<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.pass
    }
}

impl GpuBuffer {
    /// Starts a copy of the first `len` bytes into a mappable staging buffer, submitted with
    /// everything recorded before it.
    fn start_read(
        &self,
        len: usize,
    ) -> Result<(wgpu::Buffer, (wgpu::SubmissionIndex, u64), ReadSignal)> {
        let gpu = &self.gpu;
        let size = (len as u64).div_ceil(4) * 4;
        let staging = gpu.scoped("reading a tensor back", || {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gpu-linalg readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let mut enc = gpu.encoder("readback");
        enc.enc
            .copy_buffer_to_buffer(self.buffer(), 0, &staging, 0, size);
        let idx = enc.submit_now()?;
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        staging
            .slice(..size)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        Ok((staging, idx, rx))
    }

    fn finish_read(staging: wgpu::Buffer, len: usize) -> Result<Vec<u8>> {
        let out = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Readback(e.to_string()))?;
            view[..len].to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    fn received(r: Option<std::result::Result<(), wgpu::BufferAsyncError>>) -> Result<()> {
        match r {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(Error::Readback(format!("mapping the staging buffer: {e}"))),
            None => Err(Error::Readback("the map callback was dropped".into())),
        }
    }

    /// Blocking readback of the first `len` bytes (submits the stream first).
    pub fn read(&self, len: usize) -> Result<Vec<u8>> {
        self.gpu.check_alive()?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let (staging, (idx, seq), rx) = self.start_read(len)?;
        self.gpu
            .wait_for(Some(idx), seq, "waiting for a readback")?;
        Self::received(pollster::block_on(rx.receive()))?;
        Self::finish_read(staging, len)
    }

    /// Async readback: submits the stream, then resolves when the map callback fires (the
    /// device's poller thread blocks in `poll` for it; nothing spins).
    pub async fn read_async(&self, len: usize) -> Result<Vec<u8>> {
        self.gpu.check_alive()?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let (staging, (idx, seq), rx) = self.start_read(len)?;
        self.gpu.stream.wake_when_done(idx, seq);
        let r = rx.receive().await;
        self.gpu.check_alive()?;
        Self::received(r)?;
        Self::finish_read(staging, len)
    }
}

/// The map callback's channel of a readback in flight.
type ReadSignal = futures_intrusive::channel::shared::OneshotReceiver<
    std::result::Result<(), wgpu::BufferAsyncError>,
>;
