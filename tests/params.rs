//! Typed kernel parameters: every Rust parameter struct has the size, field names, offsets and
//! types of the WGSL uniform struct it feeds, as naga lays that struct out, and every module
//! with a uniform block has its parameter struct registered. Reordering, retyping, adding or
//! dropping a field on either side fails here.

use std::collections::BTreeSet;

use gpu_linalg::runtime::ParamsLayout;

/// The Rust spelling of a naga scalar or vector type, as the parameter structs write it.
fn rust_type(module: &naga::Module, ty: naga::Handle<naga::Type>) -> String {
    let scalar = |s: naga::Scalar| match (s.kind, s.width) {
        (naga::ScalarKind::Uint, 4) => "u32",
        (naga::ScalarKind::Sint, 4) => "i32",
        (naga::ScalarKind::Float, 4) => "f32",
        _ => "unsupported",
    };
    match &module.types[ty].inner {
        naga::TypeInner::Scalar(s) => scalar(*s).to_string(),
        naga::TypeInner::Vector { size, scalar: s } => {
            format!("[{}; {}]", scalar(*s), *size as u8)
        }
        other => format!("{other:?}"),
    }
}

/// (name, offset, type) of the WGSL struct, and its size.
fn wgsl_layout(source: &str, name: &str) -> (Vec<(String, usize, String)>, usize) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("parsing the module of {name}: {e}"));
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .expect("naga lays out the module's types");
    let (handle, ty) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no struct {name} in the module"));
    let uniform = module
        .global_variables
        .iter()
        .any(|(_, g)| g.space == naga::AddressSpace::Uniform && g.ty == handle);
    assert!(uniform, "struct {name} is not the module's uniform block");
    let naga::TypeInner::Struct { members, .. } = &ty.inner else {
        panic!("{name} is not a struct");
    };
    let fields = members
        .iter()
        .map(|m| {
            (
                m.name.clone().unwrap_or_default(),
                m.offset as usize,
                rust_type(&module, m.ty),
            )
        })
        .collect();
    (fields, layouter[handle].size as usize)
}

fn check(family: &str, layout: &ParamsLayout) {
    let (fields, size) = wgsl_layout(&layout.source, layout.wgsl_struct);
    let rust: Vec<(String, usize, String)> = layout
        .fields
        .iter()
        .map(|f| (f.name.to_string(), f.offset, f.ty.replace(' ', "")))
        .collect();
    let wgsl: Vec<(String, usize, String)> = fields
        .into_iter()
        .map(|(n, o, t)| (n, o, t.replace(' ', "")))
        .collect();
    assert_eq!(
        rust, wgsl,
        "{family}: the Rust parameters differ from WGSL struct {}",
        layout.wgsl_struct
    );
    assert_eq!(
        layout.size, size,
        "{family}: {} is {size} bytes in WGSL, {} in Rust",
        layout.wgsl_struct, layout.size
    );
}

#[test]
fn every_parameter_struct_matches_its_wgsl_struct() {
    let layouts = gpu_linalg::kernel_params();
    for (family, layout) in &layouts {
        check(family, layout);
    }
    eprintln!("{} parameter structs checked", layouts.len());
}

#[test]
fn every_module_with_a_uniform_block_has_its_parameter_struct() {
    let covered: BTreeSet<(&str, String)> = gpu_linalg::kernel_params()
        .into_iter()
        .map(|(f, l)| (f, l.source))
        .collect();
    for (family, source) in gpu_linalg::kernel_sources() {
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("parsing a {family} module: {e}"));
        let has_uniform = module
            .global_variables
            .iter()
            .any(|(_, g)| g.space == naga::AddressSpace::Uniform);
        if has_uniform {
            assert!(
                covered.contains(&(family, source.clone())),
                "a {family} module has a uniform block but no registered parameter struct"
            );
        }
    }
}

#[test]
fn a_reordered_field_is_caught() {
    // The checker itself: swapping two same-typed fields of a real layout must fail.
    let (family, mut layout) = gpu_linalg::kernel_params()
        .into_iter()
        .find(|(_, l)| l.fields.len() >= 2)
        .expect("a parameter struct with two fields");
    let (a, b) = (layout.fields[0].name, layout.fields[1].name);
    layout.fields[0].name = b;
    layout.fields[1].name = a;
    let caught = std::panic::catch_unwind(|| check(family, &layout)).is_err();
    assert!(caught, "swapping {a} and {b} of {family} went unnoticed");
}
