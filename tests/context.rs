//! Context behaviour: backend choice, threads, limits as errors, application-owned devices,
//! device loss.

mod common;

use std::sync::Arc;

use gpu_linalg::{Backend, Context, Error, Location, Tensor};

#[test]
fn cpu_backend_keeps_tensors_on_the_host() {
    let ctx = common::cpu();
    assert!(!ctx.is_gpu());
    let t = ctx.tensor(&[2], &[1.0, 2.0]).unwrap();
    assert_eq!(t.location(), Location::Host);
    assert!(ctx.device_summary().is_none());
}

#[test]
fn auto_never_picks_a_software_adapter() {
    let ctx = Context::new().unwrap();
    let real = gpu_linalg::list_adapters().iter().any(|a| a.is_real_gpu);
    assert_eq!(ctx.is_gpu(), real, "{}", ctx.description());
    if !real {
        assert!(
            ctx.description().contains("CPU backend"),
            "{}",
            ctx.description()
        );
    }
}

#[test]
fn unknown_adapter_name_is_an_error_listing_what_exists() {
    if common::gpu().is_none() {
        return;
    }
    let e = Context::with_options(gpu_linalg::ContextOptions {
        backend: Backend::Gpu,
        adapter: Some("no-such-adapter-xyz".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(e, Error::NoAdapter(_)));
    assert!(e.to_string().contains("no-such-adapter-xyz"), "{e}");
}

#[test]
fn one_context_serves_many_threads() {
    let Some(ctx) = common::gpu() else { return };
    let ctx = Arc::new(ctx.clone());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let ctx = ctx.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    let n = 1 + (t * 7 + i * 3) % 37;
                    let a = common::data(n * n, (t * 100 + i) as u64);
                    let ga = ctx.tensor(&[n, n], &a).unwrap();
                    let c = ctx.matmul(&ga, &ga).unwrap().to_vec().unwrap();
                    let host = Tensor::from_vec(&[n, n], a).unwrap();
                    let r =
                        gpu_linalg::matmul::cpu::reference_for(&host, &host, &Default::default())
                            .unwrap();
                    r.check(&c).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn tensors_beyond_the_buffer_limit_are_errors_naming_it() {
    let Some(ctx) = common::gpu() else { return };
    let limit = ctx.device_summary().unwrap().max_buffer_size;
    if limit > 4 << 30 {
        return; // the host allocation would be too big for a test
    }
    let n = (limit / 4) as usize + 1024;
    // vec![0.0; n] is lazily zeroed memory: nothing is touched before the limit check.
    let e = ctx.zeros(&[n]).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&limit.to_string()) && msg.contains("max_buffer_size"),
        "{msg}"
    );
}

#[test]
fn application_owned_device_is_used_as_is() {
    if common::gpu().is_none() {
        return;
    }
    let instance = wgpu::Instance::default();
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        force_fallback_adapter: false,
        ..Default::default()
    }))
    .unwrap();
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app buffer"),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&buffer, 0, bytemuck::cast_slice(&[1.0f32, 2.0, 3.0, 4.0]));
    let ctx = Context::from_wgpu(device.clone(), queue).unwrap();
    assert!(ctx.is_gpu());
    let a = ctx.tensor_from_buffer(buffer, &[2, 2]).unwrap();
    let c = ctx.matmul(&a, &a).unwrap();
    assert_eq!(c.to_vec().unwrap(), vec![7.0, 10.0, 15.0, 22.0]);
    // A buffer that cannot serve as storage is refused with the reason.
    let bad = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let e = ctx.tensor_from_buffer(bad, &[4]).unwrap_err();
    assert!(e.to_string().contains("STORAGE"), "{e}");
}

#[test]
fn a_destroyed_device_gives_device_lost() {
    if common::gpu().is_none() {
        return;
    }
    let ctx = Context::with_backend(Backend::Gpu).unwrap();
    let a = ctx.tensor(&[2, 2], &[1.0; 4]).unwrap();
    let (device, _) = ctx.wgpu().unwrap();
    device.destroy();
    let _ = device.poll(wgpu::PollType::Poll);
    let r = ctx.matmul(&a, &a).and_then(|c| c.to_vec());
    assert!(matches!(r, Err(Error::DeviceLost(_))), "{r:?}");
    assert!(matches!(a.to_vec(), Err(Error::DeviceLost(_))));
    // A new context works.
    let ctx2 = Context::with_backend(Backend::Gpu).unwrap();
    let b = ctx2.tensor(&[1], &[3.0]).unwrap();
    assert_eq!(ctx2.matmul(&b, &b).unwrap().to_vec().unwrap(), vec![9.0]);
}

/// Polls `fut` to completion on this thread, sleeping between polls until woken; returns its
/// output and how many times it was polled. A future that wakes itself at every poll (a spin)
/// is polled thousands of times; one woken by the map callback, a handful.
fn block_on_counting<F: std::future::Future>(fut: F) -> (F::Output, usize) {
    use std::sync::{Condvar, Mutex};
    use std::task::{Context as TaskContext, Poll, Wake, Waker};
    struct Signal(Mutex<bool>, Condvar);
    impl Wake for Signal {
        fn wake(self: Arc<Self>) {
            *self.0.lock().unwrap() = true;
            self.1.notify_one();
        }
    }
    let signal = Arc::new(Signal(Mutex::new(false), Condvar::new()));
    let waker = Waker::from(signal.clone());
    let mut cx = TaskContext::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let mut polls = 0;
    loop {
        polls += 1;
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return (v, polls);
        }
        let mut woken = signal.0.lock().unwrap();
        while !*woken {
            woken = signal.1.wait(woken).unwrap();
        }
        *woken = false;
    }
}

#[test]
fn async_readback_is_woken_by_the_map_callback_not_by_spinning() {
    let Some(ctx) = common::gpu() else { return };
    let n = 512;
    let a = ctx.tensor(&[n, n], &common::data(n * n, 7)).unwrap();
    // Work in flight when the readback starts, so the future has to wait for it.
    let c = ctx.matmul(&a, &a).unwrap();
    let (got, polls) = block_on_counting(c.to_vec_async());
    let got = got.unwrap();
    assert_eq!(got, c.to_vec().unwrap());
    assert!(polls <= 4, "the readback future was polled {polls} times");
}
