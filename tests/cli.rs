//! The `gpu-linalg` binary: ops on .npy files, one-line errors, no output left on failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gpu_linalg::npy::{encode_npy_f32, read_npy, write_npy_f16, write_npy_f32};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gpu-linalg"));
    c.env("GPU_LINALG_NO_TUNING_CACHE", "1")
        .env("GPU_LINALG_MATMUL_KERNEL", "vec4:4x2@64");
    c
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gpu-linalg-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The success contract: exit 0 (stderr shown otherwise).
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The error contract: non-zero exit, exactly one line on stderr (Mesa's own warnings aside),
/// containing `needle`.
fn assert_error(out: &Output, needle: &str) {
    assert!(!out.status.success(), "expected failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("gpu-linalg:"))
        .collect();
    assert_eq!(ours.len(), 1, "stderr: {stderr}");
    assert!(ours[0].contains(needle), "'{}' lacks '{needle}'", ours[0]);
}

fn backends() -> Vec<&'static str> {
    let mut b = vec!["cpu"];
    if common::gpu().is_some() {
        b.push("gpu");
    }
    b
}

#[test]
fn matmul_on_npy_files_matches_numpy_semantics() {
    let d = tmpdir("ok");
    let (a, b, bias) = (d.join("a.npy"), d.join("b.npy"), d.join("bias.npy"));
    write_npy_f32(&a, &[2, 3], &[1., 2., 3., 4., 5., 6.]).unwrap();
    write_npy_f32(&b, &[3, 2], &[1., 0., 0., 1., 1., 1.]).unwrap();
    write_npy_f32(&bias, &[2], &[0.5, -10.0]).unwrap();
    for backend in backends() {
        let c = d.join(format!("c-{backend}.npy"));
        let out = run(&[
            "--backend",
            backend,
            "--verify",
            "matmul",
            s(&a),
            s(&b),
            "-o",
            s(&c),
            "--bias",
            s(&bias),
            "--activation",
            "relu",
        ]);
        assert_ok(&out);
        let r = read_npy(&c).unwrap();
        assert_eq!(r.shape, vec![2, 2]);
        assert_eq!(r.data, vec![4.5, 0.0, 10.5, 1.0]);
        // Transposes: Aᵀ (3×2)ᵀ·B … use A as 3×2 stored transposed.
        let c2 = d.join(format!("c2-{backend}.npy"));
        let out = run(&[
            "--backend",
            backend,
            "matmul",
            s(&b),
            s(&a),
            "-o",
            s(&c2),
            "--transpose-a",
            "--transpose-b",
        ]);
        assert_ok(&out);
        let r = read_npy(&c2).unwrap();
        // Bᵀ (2×3) · Aᵀ (3×2) = (A·B)ᵀ
        assert_eq!(r.shape, vec![2, 2]);
        assert_eq!(r.data, vec![4.0, 10.0, 5.0, 11.0]);
    }
}

/// A float64, Fortran-order, big-endian file, as numpy can write them.
fn f64_fortran_be(shape: (usize, usize), c_order_values: &[f64]) -> Vec<u8> {
    let header = format!(
        "{{'descr': '>f8', 'fortran_order': True, 'shape': ({}, {}), }}",
        shape.0, shape.1
    );
    let mut h = header.into_bytes();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h);
    for j in 0..shape.1 {
        for i in 0..shape.0 {
            out.extend(c_order_values[i * shape.1 + j].to_be_bytes());
        }
    }
    out
}

#[test]
fn float64_fortran_big_endian_inputs_are_read() {
    let d = tmpdir("f64");
    let (a, b, c) = (d.join("a.npy"), d.join("b.npy"), d.join("c.npy"));
    std::fs::write(&a, f64_fortran_be((2, 3), &[1., 2., 3., 4., 5., 6.])).unwrap();
    std::fs::write(&b, encode_npy_f32(&[3], &[1., 1., 1.]).unwrap()).unwrap();
    let out = run(&["--backend", "cpu", "matmul", s(&a), s(&b), "-o", s(&c)]);
    assert_ok(&out);
    let r = read_npy(&c).unwrap();
    assert_eq!(r.shape, vec![2]);
    assert_eq!(r.data, vec![6.0, 15.0]);
}

#[test]
fn errors_are_one_line_and_leave_no_output() {
    let d = tmpdir("err");
    let (a, b, c) = (d.join("a.npy"), d.join("b.npy"), d.join("c.npy"));
    write_npy_f32(&a, &[2, 3], &[0.0; 6]).unwrap();
    write_npy_f32(&b, &[4, 2], &[0.0; 8]).unwrap();
    for backend in backends() {
        let out = run(&["--backend", backend, "matmul", s(&a), s(&b), "-o", s(&c)]);
        assert_error(&out, "[2, 3]");
        assert!(!c.exists());
    }
    let out = run(&["matmul", s(&d.join("missing.npy")), s(&b), "-o", s(&c)]);
    assert_error(&out, "missing.npy");
    let int8 = d.join("int8.npy");
    let mut bytes = encode_npy_f32(&[2], &[0.0, 0.0]).unwrap();
    let pos = bytes.windows(3).position(|w| w == b"<f4").unwrap();
    bytes[pos..pos + 3].copy_from_slice(b"|i1");
    bytes.truncate(bytes.len() - 6);
    std::fs::write(&int8, &bytes).unwrap();
    let out = run(&["matmul", s(&int8), s(&b), "-o", s(&c)]);
    assert_error(&out, "astype");
    let out = run(&["matmul", s(&a), s(&a), "-o", s(&c), "--activation", "swish"]);
    assert_error(&out, "swish");
    let out = run(&["--backend", "tpu", "matmul", s(&a), s(&a), "-o", s(&c)]);
    assert_error(&out, "tpu");
    let sq = d.join("sq.npy");
    write_npy_f32(&sq, &[3, 3], &[1.0; 9]).unwrap();
    let out = run(&[
        "matmul",
        s(&sq),
        s(&sq),
        "-o",
        s(&d.join("no/such/dir/c.npy")),
    ]);
    assert_error(&out, "no/such/dir");
    assert!(!c.exists());
    let left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 4, "unexpected files left: {left:?}");
}

#[test]
fn info_names_each_backend_choice() {
    let out = run(&["info"]);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--backend auto",
        "--backend gpu",
        "--backend cpu",
        "CPU backend",
    ] {
        assert!(text.contains(needle), "{text}");
    }
    // With only a software adapter, auto must pick the CPU and say so.
    if gpu_linalg::list_adapters().iter().all(|a| !a.is_real_gpu) {
        assert!(
            text.contains("--backend auto would use the fast CPU backend"),
            "{text}"
        );
    }
}

#[test]
fn bench_writes_json_csv_and_plot() {
    let d = tmpdir("bench");
    let (j, c, p) = (d.join("out.json"), d.join("out.csv"), d.join("out.svg"));
    let out = run(&[
        "bench",
        "--sizes",
        "16,33",
        "--repeat",
        "1",
        "--json",
        s(&j),
        "--csv",
        s(&c),
        "--plot",
        s(&p),
    ]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("kernel ms") && stdout.contains("33x33x33"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&j).unwrap();
    for needle in [
        "\"machine\"",
        "\"adapter\"",
        "\"api\"",
        "\"driver\"",
        "\"cpu\"",
        "\"threads\"",
        "\"results\"",
        "\"op\": \"matmul\"",
        "\"shape\": \"33x33x33\"",
        "\"backend\": \"cpu\"",
        "\"median_s\"",
        "\"spread_s\"",
        "\"kernel_s\"",
        "\"e2e_s\"",
        "\"gflops\"",
        "\"gbs\"",
        "\"repeats\"",
    ] {
        assert!(text.contains(needle), "{needle} missing: {text}");
    }
    if common::gpu().is_some() {
        // lavapipe offers timestamps: GPU rows carry kernel and end-to-end times.
        let gpu_rows: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("\"backend\": \"gpu\""))
            .collect();
        assert!(!gpu_rows.is_empty(), "{text}");
        for r in gpu_rows {
            assert!(
                !r.contains("\"kernel_s\": null") && !r.contains("\"e2e_s\": null"),
                "{r}"
            );
        }
    }
    let csv = std::fs::read_to_string(&c).unwrap();
    assert!(csv.starts_with("op,shape,backend,kernel,median_s"), "{csv}");
    assert!(csv.lines().count() >= 3, "{csv}");
    let svg = std::fs::read_to_string(&p).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("<polyline"),
        "no lines in the plot"
    );
    // A bad plot format or output folder fails before any benchmark runs, leaving nothing.
    let out = run(&["bench", "--sizes", "8", "--plot", s(&d.join("x.gif"))]);
    assert_error(&out, "x.gif");
    let out = run(&["bench", "--sizes", "8", "--json", s(&d.join("nope/x.json"))]);
    assert_error(&out, "nope");
    let out = run(&["bench", "--ops", "fft"]);
    assert_error(&out, "fft");
}

#[test]
fn bench_times_the_decompositions_with_their_sweeps() {
    let d = tmpdir("bench-decomp");
    let j = d.join("d.json");
    // No op of the list takes 40x9 (eigh takes n, svd-batched BxMxN): the error names the
    // size. With several ops, each runs the sizes of its own forms (below: eigh skips 40x9).
    let out = run(&[
        "bench",
        "--ops",
        "eigh,svd-batched",
        "--sizes",
        "40x9",
        "--repeat",
        "1",
    ]);
    assert_error(&out, "40x9");
    let out = run(&[
        "bench",
        "--ops",
        "svd,qr",
        "--sizes",
        "24,40x9",
        "--repeat",
        "1",
        "--json",
        s(&j),
    ]);
    assert_ok(&out);
    let text = std::fs::read_to_string(&j).unwrap();
    for needle in [
        "\"shape\": \"24x24\"",
        "\"shape\": \"40x9\"",
        "\"op\": \"qr\"",
    ] {
        assert!(text.contains(needle), "{needle} missing: {text}");
    }
    let j2 = d.join("b.json");
    let out = run(&[
        "bench",
        "--ops",
        "svd-batched",
        "--sizes",
        "33",
        "--repeat",
        "1",
    ]);
    assert_error(&out, "BxMxN");
    let out = run(&[
        "bench",
        "--ops",
        "svd-batched",
        "--sizes",
        "50x5x7",
        "--repeat",
        "1",
        "--json",
        s(&j2),
    ]);
    assert_ok(&out);
    let batched = std::fs::read_to_string(&j2).unwrap();
    assert!(batched.contains("1 thread"), "{batched}");
    if common::gpu().is_some() {
        // The Jacobi rows (the batched kernel: svd 24×24 and svd-batched) report their
        // sweeps, the band SVD (40×9 has 40 rows) and the QR none; only the QR has a rate
        // (in LAPACK's nominal flops).
        let rows: Vec<serde_json::Value> = [&text, &batched]
            .iter()
            .flat_map(|t| {
                serde_json::from_str::<serde_json::Value>(t).unwrap()["results"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .filter(|r| r["backend"] == "gpu")
            .collect();
        assert!(!rows.is_empty());
        for r in &rows {
            let jacobi = r["op"] == "svd-batched" || (r["op"] == "svd" && r["shape"] == "24x24");
            assert_eq!(!r["sweeps"].is_null(), jacobi, "{r}");
            assert_eq!(!r["gflops"].is_null(), r["op"] == "qr", "{r}");
        }
    }
}

#[test]
fn convolutions_on_npy_files() {
    let d = tmpdir("conv");
    let (x, w, b) = (d.join("x.npy"), d.join("w.npy"), d.join("b.npy"));
    write_npy_f32(&x, &[1, 1, 3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]).unwrap();
    write_npy_f32(&w, &[1, 1, 2, 2], &[1., 0., 0., 1.]).unwrap();
    write_npy_f32(&b, &[1], &[-10.0]).unwrap();
    for backend in backends() {
        let y = d.join(format!("y-{backend}.npy"));
        let out = run(&[
            "--backend",
            backend,
            "--verify",
            "conv2d",
            s(&x),
            s(&w),
            "-o",
            s(&y),
            "--bias",
            s(&b),
            "--activation",
            "relu",
            "--padding",
            "valid",
        ]);
        assert_ok(&out);
        let r = read_npy(&y).unwrap();
        assert_eq!(r.shape, vec![1, 1, 2, 2]);
        assert_eq!(r.data, vec![0., 0., 2., 4.]);
        let t = d.join(format!("t-{backend}.npy"));
        let out = run(&[
            "--backend",
            backend,
            "--verify",
            "conv-transpose2d",
            s(&x),
            s(&w),
            "-o",
            s(&t),
            "--stride",
            "2",
            "--output-padding",
            "1",
        ]);
        assert_ok(&out);
        assert_eq!(read_npy(&t).unwrap().shape, vec![1, 1, 7, 7]);
        let x1 = d.join("x1.npy");
        let w1 = d.join("w1.npy");
        write_npy_f32(&x1, &[2, 5], &[1., 2., 3., 4., 5., 1., 1., 1., 1., 1.]).unwrap();
        write_npy_f32(&w1, &[2, 1, 3], &[1., 1., 1., 0., 1., 0.]).unwrap();
        let y1 = d.join(format!("y1-{backend}.npy"));
        let out = run(&[
            "--backend",
            backend,
            "conv1d",
            s(&x1),
            s(&w1),
            "-o",
            s(&y1),
            "--groups",
            "2",
            "--padding",
            "same",
        ]);
        assert_ok(&out);
        let r = read_npy(&y1).unwrap();
        assert_eq!(r.shape, vec![2, 5]);
        assert_eq!(r.data, vec![3., 6., 9., 12., 9., 1., 1., 1., 1., 1.]);
    }
    let x3 = d.join("x3.npy");
    write_npy_f32(&x3, &[1, 3, 4, 4], &[0.0; 48]).unwrap();
    let w3 = d.join("w3.npy");
    write_npy_f32(&w3, &[2, 1, 3, 3], &[0.0; 18]).unwrap();
    let y3 = d.join("y3.npy");
    let out = run(&["conv2d", s(&x3), s(&w3), "-o", s(&y3), "--groups", "2"]);
    assert_error(&out, "channels 3 not divisible by groups 2");
    let out = run(&["conv2d", s(&x3), s(&w3), "-o", s(&y3), "--stride", "2,x"]);
    assert_error(&out, "stride");
    assert!(!y3.exists());
}

/// 50 hostile .npy files: each gives one error line, a non-zero exit (not a panic) and no
/// output file.
#[test]
fn hostile_npy_files_are_refused_cleanly() {
    let d = tmpdir("hostile");
    let good = encode_npy_f32(&[2, 3], &[1., 2., 3., 4., 5., 6.]).unwrap();
    let header = |dict: &str| -> Vec<u8> {
        let mut h = dict.as_bytes().to_vec();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h);
        out
    };
    let with_data = |dict: &str, data: usize| {
        let mut v = header(dict);
        v.extend(std::iter::repeat_n(0u8, data));
        v
    };
    let mut files: Vec<Vec<u8>> = vec![
        vec![],
        b"\x93NUMPY".to_vec(),
        b"not a numpy file at all".to_vec(),
        good[..good.len() - 1].to_vec(),
        good[..20].to_vec(),
        good[..10].to_vec(),
        with_data(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3), }",
            24,
        ),
        with_data(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            28,
        ),
        with_data(
            "{'descr': '|i1', 'fortran_order': False, 'shape': (6,), }",
            6,
        ),
        with_data(
            "{'descr': '<i4', 'fortran_order': False, 'shape': (6,), }",
            24,
        ),
        with_data(
            "{'descr': '>i8', 'fortran_order': False, 'shape': (6,), }",
            48,
        ),
        with_data(
            "{'descr': '<c8', 'fortran_order': False, 'shape': (6,), }",
            48,
        ),
        with_data(
            "{'descr': '<c16', 'fortran_order': False, 'shape': (6,), }",
            96,
        ),
        with_data(
            "{'descr': '|O', 'fortran_order': False, 'shape': (6,), }",
            48,
        ),
        with_data(
            "{'descr': '|b1', 'fortran_order': False, 'shape': (6,), }",
            6,
        ),
        with_data(
            "{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }",
            24,
        ),
        with_data(
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
            8,
        ),
        with_data(
            "{'descr': '<f2', 'fortran_order': False, 'shape': (6,), }",
            10,
        ),
        with_data(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }",
            16,
        ),
        with_data(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }",
            16,
        ),
        with_data(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3), }",
            16,
        ),
        with_data(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4, 5, 6), }",
            2880,
        ),
        with_data("{'descr': '<f4', 'fortran_order': False }", 24),
        with_data("{'descr': '<f4', 'shape': (6,) }", 24),
        with_data("{'fortran_order': False, 'shape': (6,) }", 24),
        with_data(
            "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (6,), }",
            24,
        ),
        with_data(
            "{'descr': '<f4', 'fortran_order': False, 'shape': [6], }",
            24,
        ),
        with_data("{'descr': '<f4', 'fortran_order': False, 'shape': (6,)", 24),
        with_data("garbage", 24),
        with_data("", 24),
        with_data(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'extra': 1}",
            24,
        ),
        with_data("{'descr': 42, 'fortran_order': False, 'shape': (6,), }", 24),
        with_data(
            "{'descr': '<f4', 'fortran_order': False, 'shape': ('a',), }",
            24,
        ),
    ];
    // A header length pointing past the end, a bad version, and random corruptions of a good file.
    let mut long = good.clone();
    long[8] = 0xff;
    long[9] = 0xff;
    files.push(long);
    let mut version = good.clone();
    version[6] = 9;
    files.push(version);
    let mut s: u64 = 7;
    while files.len() < 48 {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut f = good.clone();
        let pos = 6 + (s >> 33) as usize % 60;
        f[pos] = f[pos].wrapping_add(1 + (s >> 20) as u8 % 200);
        f.truncate(good.len() - 1 - (s >> 40) as usize % 8);
        files.push(f);
    }
    let c = d.join("c.npy");
    let ok = d.join("ok.npy");
    std::fs::write(&ok, &good).unwrap();
    let mut cases: Vec<Vec<String>> = Vec::new();
    for (i, bytes) in files.iter().enumerate() {
        let p = d.join(format!("h{i}.npy"));
        std::fs::write(&p, bytes).unwrap();
        cases.push(vec![
            "matmul".into(),
            p.display().to_string(),
            ok.display().to_string(),
            "-o".into(),
            c.display().to_string(),
        ]);
    }
    cases.push(vec![
        "matmul".into(),
        d.join("missing.npy").display().to_string(),
        s_owned(&ok),
        "-o".into(),
        s_owned(&c),
    ]);
    cases.push(vec![
        "matmul".into(),
        s_owned(&ok),
        s_owned(&ok),
        "-o".into(),
        d.join("none/c.npy").display().to_string(),
    ]);
    assert_eq!(cases.len(), 50);
    for (i, args) in cases.iter().enumerate() {
        let mut full = vec!["--backend", "cpu"];
        full.extend(args.iter().map(String::as_str));
        let out = run(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "case {i} panicked: {stderr}");
        assert_eq!(out.status.code(), Some(1), "case {i}: {stderr}");
        let ours: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("gpu-linalg:"))
            .collect();
        assert_eq!(ours.len(), 1, "case {i}: {stderr}");
        assert!(!c.exists(), "case {i} left an output");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn s_owned(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn without_any_adapter_auto_and_cpu_work_and_gpu_says_why() {
    let d = tmpdir("noadapter");
    let (a, c) = (d.join("a.npy"), d.join("c.npy"));
    write_npy_f32(&a, &[2, 2], &[1., 2., 3., 4.]).unwrap();
    // On this platform wgpu has no DX12 backend: WGPU_BACKEND=dx12 leaves no adapter at all.
    let no_adapter = |args: &[&str]| {
        bin()
            .env("WGPU_BACKEND", "dx12")
            .args(args)
            .output()
            .unwrap()
    };
    for backend in ["auto", "cpu"] {
        let out = no_adapter(&["--backend", backend, "matmul", s(&a), s(&a), "-o", s(&c)]);
        assert!(
            out.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(read_npy(&c).unwrap().data, vec![7., 10., 15., 22.]);
        std::fs::remove_file(&c).unwrap();
    }
    let out = no_adapter(&["--backend", "gpu", "matmul", s(&a), s(&a), "-o", s(&c)]);
    assert_error(&out, "no GPU adapter");
    assert!(!c.exists());
    let out = no_adapter(&["info"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("adapters found: 0"));
}

#[test]
fn elementwise_ops_on_npy_files() {
    let d = tmpdir("elementwise");
    let (a, b, row) = (d.join("a.npy"), d.join("b.npy"), d.join("row.npy"));
    write_npy_f32(&a, &[2, 3], &[1., -2., 3., -4., 5., -6.]).unwrap();
    write_npy_f32(&b, &[2, 3], &[0.5, 0.5, 0.5, 2., 2., 2.]).unwrap();
    write_npy_f32(&row, &[3], &[10., 20., 30.]).unwrap();
    let cases: Vec<(Vec<&str>, Vec<usize>, Vec<f32>)> = vec![
        (
            vec!["add", s(&a), s(&row)],
            vec![2, 3],
            vec![11., 18., 33., 6., 25., 24.],
        ),
        (
            vec!["mul", s(&a), s(&b)],
            vec![2, 3],
            vec![0.5, -1., 1.5, -8., 10., -12.],
        ),
        (
            vec!["axpy", s(&a), s(&row), "--alpha", "-1"],
            vec![2, 3],
            vec![9., 22., 27., 14., 15., 36.],
        ),
        (
            vec!["scale", s(&a), "--alpha", "0.5"],
            vec![2, 3],
            vec![0.5, -1., 1.5, -2., 2.5, -3.],
        ),
        (
            vec!["clamp", s(&a), "--min", "-2", "--max", "3"],
            vec![2, 3],
            vec![1., -2., 3., -2., 3., -2.],
        ),
        (
            vec!["relu", s(&a)],
            vec![2, 3],
            vec![1., 0., 3., 0., 5., 0.],
        ),
        (vec!["abs", s(&a)], vec![2, 3], vec![1., 2., 3., 4., 5., 6.]),
        (
            vec!["lerp", s(&a), s(&b), "--t", "1"],
            vec![2, 3],
            vec![0.5, 0.5, 0.5, 2., 2., 2.],
        ),
    ];
    for backend in backends() {
        for (i, (args, shape, want)) in cases.iter().enumerate() {
            let c = d.join(format!("c-{backend}-{i}.npy"));
            let mut full = vec!["--backend", backend, "--verify", "elementwise"];
            full.extend(args.iter().copied());
            full.extend(["-o", s(&c)]);
            let out = run(&full);
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let r = read_npy(&c).unwrap();
            assert_eq!(&r.shape, shape, "{args:?}");
            assert_eq!(&r.data, want, "{args:?}");
        }
        for op in ["exp", "log", "sqrt", "gelu", "gelu-tanh", "sigmoid", "tanh"] {
            let c = d.join(format!("u-{backend}-{op}.npy"));
            let out = run(&[
                "--backend",
                backend,
                "--verify",
                "elementwise",
                op,
                s(&b),
                "-o",
                s(&c),
            ]);
            assert!(
                out.status.success(),
                "{op}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for op in ["sub", "div", "slerp"] {
            let c = d.join(format!("s-{backend}-{op}.npy"));
            let out = run(&[
                "--backend",
                backend,
                "--verify",
                "elementwise",
                op,
                s(&a),
                s(&b),
                "-o",
                s(&c),
                "--t",
                "0.3",
            ]);
            assert!(
                out.status.success(),
                "{op}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // Errors: one line, non-zero exit, no output file.
    let c = d.join("bad.npy");
    let bad = d.join("bad4.npy");
    write_npy_f32(&bad, &[4], &[0.0; 4]).unwrap();
    for backend in backends() {
        let out = run(&[
            "--backend",
            backend,
            "elementwise",
            "add",
            s(&a),
            s(&bad),
            "-o",
            s(&c),
        ]);
        assert_error(&out, "[2, 3]");
        assert!(!c.exists());
    }
    for (args, needle) in [
        (vec!["elementwise", "pow", s(&a), s(&b)], "pow"),
        (vec!["elementwise", "add", s(&a)], "two inputs"),
        (vec!["elementwise", "exp", s(&a), s(&b)], "one input"),
        (vec!["elementwise", "scale", s(&a)], "--alpha"),
        (vec!["elementwise", "lerp", s(&a), s(&b)], "--t"),
    ] {
        let mut full = args.clone();
        full.extend(["-o", s(&c)]);
        assert_error(&run(&full), needle);
        assert!(!c.exists());
    }
}

#[test]
fn reductions_on_npy_files() {
    let d = tmpdir("reduce");
    let x = d.join("x.npy");
    write_npy_f32(&x, &[2, 3], &[1., 5., 3., 4., 2., 6.]).unwrap();
    for backend in backends() {
        let y = d.join(format!("sum-{backend}.npy"));
        let out = run(&[
            "--backend",
            backend,
            "--verify",
            "reduce",
            "sum",
            s(&x),
            "-o",
            s(&y),
            "--axis",
            "-1",
        ]);
        assert_ok(&out);
        let r = read_npy(&y).unwrap();
        assert_eq!((r.shape, r.data), (vec![2], vec![9., 12.]));
        // argmax over all: a 0-d int64 array holding the flat index.
        let i = d.join(format!("argmax-{backend}.npy"));
        let out = run(&[
            "--backend",
            backend,
            "--verify",
            "reduce",
            "argmax",
            s(&x),
            "-o",
            s(&i),
        ]);
        assert_ok(&out);
        let bytes = std::fs::read(&i).unwrap();
        let header = String::from_utf8_lossy(&bytes[..bytes.len() - 8]);
        assert!(
            header.contains("'<i8'") && header.contains("'shape': ()"),
            "{header}"
        );
        assert_eq!(&bytes[bytes.len() - 8..], &5i64.to_le_bytes());
        let v = d.join(format!("var-{backend}.npy"));
        let out = run(&[
            "--backend",
            backend,
            "reduce",
            "var",
            s(&x),
            "-o",
            s(&v),
            "--axis",
            "0",
            "--ddof",
            "1",
            "--keepdims",
        ]);
        assert!(out.status.success());
        let r = read_npy(&v).unwrap();
        assert_eq!((r.shape, r.data), (vec![1, 3], vec![4.5, 4.5, 4.5]));
        // Errors: one line, non-zero exit, no output file.
        let bad = d.join(format!("bad-{backend}.npy"));
        let out = run(&[
            "--backend",
            backend,
            "reduce",
            "max",
            s(&x),
            "-o",
            s(&bad),
            "--axis",
            "2",
        ]);
        assert_error(&out, "axis 2 is out of bounds");
        assert!(!bad.exists());
        let out = run(&[
            "--backend",
            backend,
            "reduce",
            "median",
            s(&x),
            "-o",
            s(&bad),
        ]);
        assert_error(&out, "unknown reduction 'median'");
        let empty = d.join("empty.npy");
        write_npy_f32(&empty, &[0], &[]).unwrap();
        let out = run(&[
            "--backend",
            backend,
            "reduce",
            "max",
            s(&empty),
            "-o",
            s(&bad),
        ]);
        assert_error(&out, "zero-size array to reduction operation maximum");
        assert!(!bad.exists());
    }
}

#[test]
fn lowrank_and_values_only_svd() {
    let d = tmpdir("lowrank");
    let a = d.join("a.npy");
    // Rank 1: the rank-1 approximation is A itself.
    let v: Vec<f32> = (0..6 * 4)
        .map(|i| (i / 4) as f32 + 1.0)
        .zip((0..6 * 4).map(|i| (i % 4) as f32 - 1.5))
        .map(|(r, c)| r * c)
        .collect();
    write_npy_f32(&a, &[6, 4], &v).unwrap();
    for backend in backends() {
        let o = d.join(format!("lr-{backend}.npy"));
        let out = run(&[
            "--backend",
            backend,
            "--verify",
            "lowrank",
            s(&a),
            "-r",
            "1",
            "-o",
            s(&o),
        ]);
        assert_ok(&out);
        let r = read_npy(&o).unwrap();
        assert_eq!(r.shape, vec![6, 4]);
        for (x, y) in r.data.iter().zip(&v) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
        let o2 = d.join(format!("lr-rand-{backend}.npy"));
        let out = run(&[
            "--backend",
            backend,
            "--verify",
            "lowrank",
            s(&a),
            "-r",
            "1",
            "-o",
            s(&o2),
            "--randomized",
            "--seed",
            "7",
        ]);
        assert_ok(&out);
        let sv = d.join(format!("s-{backend}.npy"));
        let out = run(&[
            "--backend",
            backend,
            "svd",
            s(&a),
            "--values-only",
            "--s",
            s(&sv),
        ]);
        assert_ok(&out);
        assert_eq!(read_npy(&sv).unwrap().shape, vec![4]);
    }
    let bad = d.join("bad.npy");
    assert_error(
        &run(&["svd", s(&a), "--values-only", "--u", s(&bad)]),
        "--values-only",
    );
    assert_error(&run(&["lowrank", s(&a), "-r", "9", "-o", s(&bad)]), "9");
    assert!(!bad.exists());
}

#[test]
fn cholesky_on_npy_files() {
    let d = tmpdir("cholesky");
    let a = d.join("a.npy");
    // [[4, 2], [2, 5]] = L·Lᵀ with L = [[2, 0], [1, 2]].
    write_npy_f32(&a, &[2, 2], &[4.0, 2.0, 2.0, 5.0]).unwrap();
    for backend in backends() {
        let l = d.join(format!("l-{backend}.npy"));
        assert_ok(&run(&[
            "--backend",
            backend,
            "--verify",
            "cholesky",
            s(&a),
            "-o",
            s(&l),
        ]));
        let r = read_npy(&l).unwrap();
        assert_eq!(r.shape, vec![2, 2]);
        assert_eq!(r.data, vec![2.0, 0.0, 1.0, 2.0]);
        let u = d.join(format!("u-{backend}.npy"));
        assert_ok(&run(&[
            "--backend",
            backend,
            "--verify",
            "cholesky",
            s(&a),
            "-o",
            s(&u),
            "--upper",
        ]));
        assert_eq!(read_npy(&u).unwrap().data, vec![2.0, 1.0, 0.0, 2.0]);
        // Not positive definite: one line naming the minor, no output file.
        let bad = d.join("bad.npy");
        write_npy_f32(&bad, &[2, 2], &[1.0, 2.0, 2.0, 1.0]).unwrap();
        let o = d.join(format!("none-{backend}.npy"));
        assert_error(
            &run(&["--backend", backend, "cholesky", s(&bad), "-o", s(&o)]),
            "leading minor of order 2",
        );
        assert!(!o.exists());
        let rect = d.join("rect.npy");
        write_npy_f32(&rect, &[2, 3], &[1.0; 6]).unwrap();
        assert_error(
            &run(&["--backend", backend, "cholesky", s(&rect), "-o", s(&o)]),
            "[2, 3]",
        );
        assert!(!o.exists());
    }
}

#[test]
fn solvers_on_npy_files() {
    let d = tmpdir("solvers");
    let a = d.join("a.npy");
    let b = d.join("b.npy");
    // [[3, 1], [1, 2]]·[2, 3] = [9, 8]; det 5.
    write_npy_f32(&a, &[2, 2], &[3.0, 1.0, 1.0, 2.0]).unwrap();
    write_npy_f32(&b, &[2], &[9.0, 8.0]).unwrap();
    let singular = d.join("singular.npy");
    write_npy_f32(&singular, &[2, 2], &[1.0, 2.0, 2.0, 4.0]).unwrap();
    let nan = d.join("nan.npy");
    write_npy_f32(&nan, &[2, 2], &[1.0, f32::NAN, 0.0, 1.0]).unwrap();
    for backend in backends() {
        let g = |args: &[&str]| {
            let mut v = vec!["--backend", backend, "--verify"];
            v.extend_from_slice(args);
            run(&v)
        };
        let x = d.join(format!("x-{backend}.npy"));
        for assume in ["gen", "pos"] {
            assert_ok(&g(&[
                "solve",
                s(&a),
                s(&b),
                "-o",
                s(&x),
                "--assume",
                assume,
            ]));
            let r = read_npy(&x).unwrap();
            assert_eq!(r.shape, vec![2]);
            assert!(
                (r.data[0] - 2.0).abs() < 1e-5 && (r.data[1] - 3.0).abs() < 1e-5,
                "{r:?}"
            );
        }
        let ai = d.join(format!("ai-{backend}.npy"));
        assert_ok(&g(&["inv", s(&a), "-o", s(&ai)]));
        let r = read_npy(&ai).unwrap().data;
        for (got, want) in r.iter().zip([0.4f32, -0.2, -0.2, 0.6]) {
            assert!((got - want).abs() < 1e-6, "{r:?}");
        }
        let out = g(&["det", s(&a)]);
        assert_ok(&out);
        let printed: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert!((printed - 5.0).abs() < 1e-5, "{printed}");
        let (sign, logabs) = (
            d.join(format!("s-{backend}.npy")),
            d.join(format!("l-{backend}.npy")),
        );
        let out = g(&[
            "slogdet",
            s(&a),
            "--sign",
            s(&sign),
            "--logabsdet",
            s(&logabs),
        ]);
        assert_ok(&out);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("sign 1"),
            "{out:?}"
        );
        assert_eq!(read_npy(&sign).unwrap().data, vec![1.0]);
        assert!((read_npy(&logabs).unwrap().data[0] - 5.0f32.ln()).abs() < 1e-6);
        let (p, l, u, perm) = (
            d.join(format!("p-{backend}.npy")),
            d.join(format!("lo-{backend}.npy")),
            d.join(format!("u-{backend}.npy")),
            d.join(format!("perm-{backend}.npy")),
        );
        assert_ok(&g(&[
            "lu",
            s(&a),
            "--p",
            s(&p),
            "--l",
            s(&l),
            "--u",
            s(&u),
            "--perm",
            s(&perm),
        ]));
        assert_eq!(read_npy(&p).unwrap().data, vec![1.0, 0.0, 0.0, 1.0]);
        assert_eq!(read_npy(&u).unwrap().data[..2], [3.0, 1.0]);
        // lstsq: an overdetermined 3×2 system with the exact solution [1, 2] plus a residual.
        let (a3, b3l) = (d.join("a3.npy"), d.join("b3l.npy"));
        write_npy_f32(&a3, &[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]).unwrap();
        write_npy_f32(&b3l, &[3], &[1.0, 2.0, 4.0]).unwrap();
        let (lx, lr, ls) = (
            d.join(format!("lx-{backend}.npy")),
            d.join(format!("lr-{backend}.npy")),
            d.join(format!("ls-{backend}.npy")),
        );
        let out = g(&[
            "lstsq",
            s(&a3),
            s(&b3l),
            "-o",
            s(&lx),
            "--residuals",
            s(&lr),
            "--s",
            s(&ls),
        ]);
        assert_ok(&out);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("rank 2"),
            "{out:?}"
        );
        // Normal equations: [[2, 1], [1, 2]]·x = [5, 6] → x = [4/3, 7/3], residual 1/3.
        let x = read_npy(&lx).unwrap().data;
        assert!(
            (x[0] - 4.0 / 3.0).abs() < 1e-5 && (x[1] - 7.0 / 3.0).abs() < 1e-5,
            "{x:?}"
        );
        let res = read_npy(&lr).unwrap();
        assert_eq!(res.shape, vec![1]);
        assert!((res.data[0] - 1.0 / 3.0).abs() < 1e-5, "{res:?}");
        assert_eq!(read_npy(&ls).unwrap().shape, vec![2]);
        // A rectangular LU has scipy's shapes: P 3×3, L 3×2, U 2×2.
        assert_ok(&g(&[
            "lu",
            s(&a3),
            "--p",
            s(&p),
            "--l",
            s(&l),
            "--u",
            s(&u),
        ]));
        assert_eq!(read_npy(&p).unwrap().shape, vec![3, 3]);
        assert_eq!(read_npy(&l).unwrap().shape, vec![3, 2]);
        assert_eq!(read_npy(&u).unwrap().shape, vec![2, 2]);
        let pi = d.join(format!("pinv-{backend}.npy"));
        assert_ok(&g(&["pinv", s(&singular), "-o", s(&pi)]));
        assert_eq!(read_npy(&pi).unwrap().shape, vec![2, 2]);
        // Errors: one line, no output file.
        let o = d.join(format!("none-{backend}.npy"));
        assert_error(&g(&["solve", s(&singular), s(&b), "-o", s(&o)]), "singular");
        assert_error(&g(&["inv", s(&singular), "-o", s(&o)]), "U[1, 1] = 0");
        assert_error(&g(&["inv", s(&nan), "-o", s(&o)]), "NaN");
        assert_error(
            &g(&["solve", s(&a), s(&a), "-o", s(&o), "--assume", "sym"]),
            "'gen' or 'pos'",
        );
        let b3 = d.join("b3.npy");
        write_npy_f32(&b3, &[3], &[1.0; 3]).unwrap();
        assert_error(&g(&["solve", s(&a), s(&b3), "-o", s(&o)]), "[3]");
        assert_error(&g(&["det", s(&b3), "-o", s(&o)]), "[3]");
        assert_error(&g(&["lu", s(&a)]), "--p");
        assert_error(&g(&["lstsq", s(&a3), s(&b), "-o", s(&o)]), "[3, 2]");
        assert!(!o.exists());
        // A singular matrix has det 0 and slogdet (0, -inf), as numpy.
        let out = g(&["det", s(&singular)]);
        assert_ok(&out);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0e0");
    }
}

#[test]
fn pca_writes_the_transformed_data_and_accepts_projected_as_an_alias() {
    let d = tmpdir("pca");
    let x = d.join("x.npy");
    let data: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    write_npy_f32(&x, &[8, 3], &data).unwrap();
    let (t, p, c) = (d.join("t.npy"), d.join("p.npy"), d.join("c.npy"));
    let out = run(&[
        "--backend",
        "cpu",
        "pca",
        s(&x),
        "-k",
        "2",
        "--transformed",
        s(&t),
        "--components",
        s(&c),
    ]);
    assert_ok(&out);
    let tr = read_npy(&t).unwrap();
    assert_eq!(tr.shape, vec![8, 2]);
    assert_eq!(read_npy(&c).unwrap().shape, vec![2, 3]);
    let out = run(&[
        "--backend",
        "cpu",
        "pca",
        s(&x),
        "-k",
        "2",
        "--projected",
        s(&p),
    ]);
    assert_ok(&out);
    assert_eq!(read_npy(&p).unwrap().data, tr.data);
    let help = run(&["pca", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("--transformed") && text.contains("projected"),
        "{text}"
    );
    let out = run(&["--backend", "cpu", "pca", s(&x), "-k", "2"]);
    assert_error(&out, "--transformed");
}

/// The bench JSON read back into typed structs: the schema as a consumer sees it.
#[test]
fn bench_json_reads_back_into_typed_structs() {
    #[derive(serde::Deserialize)]
    struct Machine {
        adapter: Option<String>,
        api: Option<String>,
        #[allow(dead_code)]
        driver: Option<String>,
        cpu: String,
        threads: usize,
    }
    #[derive(serde::Deserialize)]
    struct Result {
        op: String,
        shape: String,
        backend: String,
        kernel: String,
        median_s: f64,
        spread_s: f64,
        kernel_s: Option<f64>,
        e2e_s: Option<f64>,
        gflops: Option<f64>,
        gbs: Option<f64>,
        repeats: usize,
        sweeps: Option<u32>,
        ops_per_s: Option<f64>,
        dispatches: Option<u64>,
        submits: Option<u64>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Report {
        machine: Machine,
        results: Vec<Result>,
    }
    let d = tmpdir("bench-typed");
    let (j, c) = (d.join("a.json"), d.join("a.csv"));
    let out = run(&[
        "--backend",
        "cpu",
        "bench",
        "--ops",
        "matmul,reduce",
        "--sizes",
        "16",
        "--repeat",
        "1",
        "--json",
        s(&j),
        "--csv",
        s(&c),
    ]);
    assert_ok(&out);
    let text = std::fs::read_to_string(&j).unwrap();
    let r: Report = serde_json::from_str(&text).unwrap();
    assert!(
        r.machine.adapter.is_none() && r.machine.api.is_none(),
        "{text}"
    );
    assert!(!r.machine.cpu.is_empty() && r.machine.threads >= 1);
    assert!(r.results.len() >= 2, "{text}");
    for row in &r.results {
        assert_eq!(row.backend, "cpu");
        assert!(!row.kernel.is_empty() && row.repeats == 1);
        assert!(row.median_s > 0.0 && row.spread_s >= 0.0);
        // CPU rows have no kernel timestamps, sweeps or dispatch counts.
        assert!(row.kernel_s.is_none() && row.sweeps.is_none());
        assert!(row.dispatches.is_none() && row.submits.is_none() && row.ops_per_s.is_none());
        let _ = row.e2e_s;
        match row.op.as_str() {
            "matmul" => {
                assert_eq!(row.shape, "16x16x16");
                assert!(row.gflops.is_some_and(|g| g > 0.0) && row.gbs.is_none());
            }
            "reduce" => assert!(row.gbs.is_some_and(|g| g > 0.0) && row.gflops.is_none()),
            op => panic!("unexpected op {op}"),
        }
    }
    // The CSV holds the same rows, same columns, numbers in the same `{:e}` text.
    let csv = std::fs::read_to_string(&c).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "op,shape,backend,kernel,median_s,spread_s,kernel_s,e2e_s,gflops,gbs,repeats,sweeps,ops_per_s,dispatches,submits"
    );
    for (line, row) in lines.zip(&r.results) {
        if line.contains('"') {
            continue; // a quoted kernel label; its commas are not separators
        }
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 15, "{line}");
        assert_eq!(f[0], row.op);
        assert_eq!(f[4].parse::<f64>().unwrap(), row.median_s);
        assert_eq!(f[4], format!("{:e}", row.median_s));
    }
}

/// float16 files stay float16 through `matmul`, elementwise ops, reductions and convolutions
/// (the result written as `<f2`, judged with `--verify`); `--dtype` converts their inputs on
/// upload (bf16 results leave as float32).
#[test]
fn half_precision_npy_files() {
    use gpu_linalg::precision::f32_to_f16_bits;
    use gpu_linalg::DType;
    let d = tmpdir("half");
    let (m, k, n) = (5, 7, 3);
    let a: Vec<u16> = common::data_full(m * k, 1)
        .iter()
        .map(|&x| f32_to_f16_bits(x))
        .collect();
    let b: Vec<u16> = common::data_full(k * n, 2)
        .iter()
        .map(|&x| f32_to_f16_bits(x))
        .collect();
    let (pa, pb, pc) = (d.join("a.npy"), d.join("b.npy"), d.join("c.npy"));
    write_npy_f16(&pa, &[m, k], &a).unwrap();
    write_npy_f16(&pb, &[k, n], &b).unwrap();
    let ra = read_npy(&pa).unwrap();
    assert_eq!((ra.dtype, ra.shape.clone()), (DType::F16, vec![m, k]));
    for backend in backends() {
        for (dtype, want) in [
            (None, DType::F16),
            (Some("bf16"), DType::F32),
            (Some("f32"), DType::F32),
        ] {
            let mut args = vec![
                "--backend",
                backend,
                "--verify",
                "matmul",
                s(&pa),
                s(&pb),
                "-o",
                s(&pc),
            ];
            if let Some(t) = dtype {
                args.extend(["--dtype", t]);
            }
            let out = run(&args);
            assert_ok(&out);
            let c = read_npy(&pc).unwrap();
            assert_eq!(
                (c.dtype, c.shape.clone()),
                (want, vec![m, n]),
                "{backend} {dtype:?}"
            );
        }
        let out = run(&[
            "--backend",
            backend,
            "matmul",
            s(&pa),
            s(&pb),
            "-o",
            s(&pc),
            "--dtype",
            "f8",
        ]);
        assert_error(&out, "--dtype");
        // Elementwise ops, reductions and convolutions: float16 in, float16 out (verified),
        // and --dtype converts their inputs too.
        let pe = d.join("e.npy");
        for (dtype, want) in [(None, DType::F16), (Some("f32"), DType::F32)] {
            let mut args = vec!["--backend", backend, "--verify", "elementwise", "abs"];
            args.extend([s(&pa), "-o", s(&pe)]);
            args.extend(dtype.map(|t| ["--dtype", t]).into_iter().flatten());
            assert_ok(&run(&args));
            let e = read_npy(&pe).unwrap();
            assert_eq!(e.dtype, want, "{backend} {dtype:?}");
            assert_eq!(e.data, ra.data.iter().map(|x| x.abs()).collect::<Vec<_>>());
        }
        let args = [
            "--backend",
            backend,
            "--verify",
            "reduce",
            "sum",
            s(&pa),
            "--axis",
            "1",
        ];
        assert_ok(&run(&[&args[..], &["-o", s(&pe)]].concat()));
        assert_eq!(read_npy(&pe).unwrap().dtype, DType::F16);
        assert_ok(&run(
            &[&args[..], &["-o", s(&pe), "--dtype", "bf16"]].concat()
        ));
        assert_eq!(read_npy(&pe).unwrap().dtype, DType::F32);
        let (px, pw) = (d.join("x.npy"), d.join("w.npy"));
        let half = |len: usize, seed: u64| -> Vec<u16> {
            common::data_full(len, seed)
                .iter()
                .map(|&v| f32_to_f16_bits(v))
                .collect()
        };
        write_npy_f16(&px, &[2, 6, 7], &half(2 * 6 * 7, 3)).unwrap();
        write_npy_f16(&pw, &[3, 2, 3, 3], &half(3 * 2 * 3 * 3, 4)).unwrap();
        let out = run(&[
            "--backend",
            backend,
            "--verify",
            "conv2d",
            s(&px),
            s(&pw),
            "-o",
            s(&pe),
        ]);
        assert_ok(&out);
        let y = read_npy(&pe).unwrap();
        assert_eq!((y.dtype, y.shape), (DType::F16, vec![3, 4, 5]));
    }
}

/// Largest |a − b| over max |b| of two `.npy` files, or ∞ when their shapes differ.
fn npy_relative_difference(a: &Path, b: &Path) -> f32 {
    let (x, y) = (read_npy(a).unwrap(), read_npy(b).unwrap());
    if x.shape != y.shape {
        return f32::INFINITY;
    }
    let scale = y.data.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
    x.data
        .iter()
        .zip(&y.data)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max)
        / scale
}

#[test]
fn streamed_commands_match_the_in_memory_ones() {
    let d = tmpdir("stream");
    let (m, n) = (2000, 12);
    // Columns of decreasing scale (a separated spectrum) around a mean of 3.
    let x: Vec<f32> = common::data_full(m * n, 40)
        .iter()
        .enumerate()
        .map(|(i, v)| 3.0 + v * (n - i % n) as f32)
        .collect();
    let b = common::data_full(m, 41);
    let (px, pb) = (d.join("x.npy"), d.join("b.npy"));
    write_npy_f32(&px, &[m, n], &x).unwrap();
    write_npy_f32(&pb, &[m], &b).unwrap();
    for be in backends() {
        let out = |name: &str| d.join(format!("{be}-{name}.npy"));
        // pca: in memory, then --stream, then chosen automatically by a small budget.
        for (tag, extra) in [
            ("mem", vec![]),
            ("stream", vec!["--stream"]),
            ("auto", vec!["--memory-budget", "64K"]),
        ] {
            let mut args = vec!["--backend", be, "pca", s(&px), "-k", "4"];
            let (c, v, t) = (
                out(&format!("{tag}-c")),
                out(&format!("{tag}-v")),
                out(&format!("{tag}-t")),
            );
            args.extend([
                "--components",
                s(&c),
                "--explained-variance",
                s(&v),
                "--transformed",
                s(&t),
            ]);
            args.extend(extra);
            let o = run(&args);
            assert_ok(&o);
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(
                tag == "auto",
                stderr.contains("note: pca:") && stderr.contains("--memory-budget"),
                "{be} {tag}: {stderr}"
            );
        }
        for tag in ["stream", "auto"] {
            for what in ["c", "v", "t"] {
                let diff = npy_relative_difference(
                    &out(&format!("{tag}-{what}")),
                    &out(&format!("mem-{what}")),
                );
                assert!(
                    diff < 1e-3,
                    "{be} pca {tag} {what}: relative difference {diff}"
                );
            }
        }
        // lstsq of a 1-D b.
        let (x_mem, x_st, res_st) = (out("lx-mem"), out("lx-st"), out("lres-st"));
        assert_ok(&run(&[
            "--backend",
            be,
            "lstsq",
            s(&px),
            s(&pb),
            "-o",
            s(&x_mem),
        ]));
        assert_ok(&run(&[
            "--backend",
            be,
            "lstsq",
            s(&px),
            s(&pb),
            "-o",
            s(&x_st),
            "--residuals",
            s(&res_st),
            "--stream",
            "--memory-budget",
            "100K",
        ]));
        assert_eq!(read_npy(&x_st).unwrap().shape, vec![n]);
        assert!(npy_relative_difference(&x_st, &x_mem) < 1e-3, "{be} lstsq");
        assert_eq!(read_npy(&res_st).unwrap().shape, vec![1]);
        // qr --r-only, streamed, against the in-memory R (signs agree: non-negative diagonals).
        let (r_mem, r_st, q_st) = (out("r-mem"), out("r-st"), out("q-st"));
        assert_ok(&run(&[
            "--backend",
            be,
            "qr",
            s(&px),
            "--r",
            s(&r_mem),
            "--r-only",
        ]));
        assert_ok(&run(&[
            "--backend",
            be,
            "qr",
            s(&px),
            "--r",
            s(&r_st),
            "--q",
            s(&q_st),
            "--r-only",
            "--stream",
            "--memory-budget",
            "100K",
        ]));
        assert!(npy_relative_difference(&r_st, &r_mem) < 1e-3, "{be} qr");
        assert_eq!(read_npy(&q_st).unwrap().shape, vec![m, n]);
        // lowrank --stream: the factors.
        let (u, sv, vt) = (out("u"), out("s"), out("vt"));
        assert_ok(&run(&[
            "--backend",
            be,
            "lowrank",
            s(&px),
            "-r",
            "3",
            "--u",
            s(&u),
            "--s",
            s(&sv),
            "--vt",
            s(&vt),
            "--stream",
            "--power-iters",
            "4",
        ]));
        assert_eq!(read_npy(&u).unwrap().shape, vec![m, 3]);
        assert_eq!(read_npy(&vt).unwrap().shape, vec![3, n]);
        let sigma = read_npy(&sv).unwrap().data;
        assert!(sigma.windows(2).all(|w| w[0] >= w[1]), "{be}: {sigma:?}");
    }
    // Errors: one line, naming the problem, no output left.
    let r = d.join("never.npy");
    assert_error(
        &run(&["qr", s(&px), "--r", s(&r), "--stream"]),
        "add --r-only",
    );
    assert_error(&run(&["qr", s(&px), "--r-only"]), "name --r");
    assert_error(
        &run(&["lowrank", s(&px), "-r", "2", "-o", s(&r), "--stream"]),
        "not the m×n approximation",
    );
    assert_error(
        &run(&["lowrank", s(&px), "-r", "2", "--u", s(&r)]),
        "--stream",
    );
    assert_error(
        &run(&[
            "pca",
            s(&px),
            "-k",
            "2",
            "--mean",
            s(&r),
            "--memory-budget",
            "lots",
        ]),
        "memory budget",
    );
    assert_error(
        &run(&[
            "--verify",
            "pca",
            s(&px),
            "-k",
            "2",
            "--mean",
            s(&r),
            "--stream",
        ]),
        "--verify",
    );
    let short = d.join("short.npy");
    write_npy_f32(&short, &[10], &[0.0; 10]).unwrap();
    assert_error(
        &run(&["lstsq", s(&px), s(&short), "-o", s(&r), "--stream"]),
        "same rows",
    );
    let bytes = std::fs::read(&px).unwrap();
    let cut = d.join("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_error(
        &run(&[
            "pca",
            s(&cut),
            "-k",
            "2",
            "--transformed",
            s(&r),
            "--stream",
        ]),
        "truncated data",
    );
    assert!(!r.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    std::fs::remove_dir_all(&d).unwrap();
}
