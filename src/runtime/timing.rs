//! Kernel timing by GPU timestamp queries.

use std::sync::Arc;

use super::device::{lock, Gpu};
use super::stream::Timer;
use crate::error::{Error, Result};

impl Gpu {
    /// Runs `f` and measures, with GPU timestamp queries, the time from the start of the first
    /// compute pass it encodes to the end of the last one: kernel time without submission,
    /// upload or readback overhead. `None` on adapters without `TIMESTAMP_QUERY`, or when `f`
    /// encoded no pass. Passes other threads encode meanwhile are counted too.
    pub(crate) fn time_gpu<T>(
        self: &Arc<Self>,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<(T, Option<f64>)> {
        if !self.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Ok((f()?, None));
        }
        let set = self.scoped("creating a timestamp query set", || {
            self.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("gpu-linalg timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            })
        })?;
        *lock(&self.timer) = Some(Timer {
            set,
            started: false,
        });
        let out = f();
        let timer = lock(&self.timer).take();
        let out = out?;
        let Some(Timer { set, started: true }) = timer else {
            return Ok((out, None));
        };
        let resolved = self.alloc_with(
            16,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            false,
            "timestamps",
        )?;
        let mut enc = self.encoder("resolving timestamps");
        enc.raw()
            .resolve_query_set(&set, 0..2, resolved.buffer(), 0);
        enc.submit()?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&resolved.read(16)?);
        let period_ns = f64::from(self.queue.get_timestamp_period());
        let secs = match ticks.as_slice() {
            [t0, t1] => t1.saturating_sub(*t0) as f64 * period_ns * 1e-9,
            _ => return Err(Error::Readback("timestamp readback was short".into())),
        };
        Ok((out, Some(secs)))
    }
}
