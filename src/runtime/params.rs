//! Typed kernel parameters: each kernel's uniform block is a `#[repr(C)]` [`bytemuck::Pod`]
//! struct declared with [`kernel_params!`](crate::kernel_params), which also records its field
//! names, offsets and types so that a test can compare them with naga's layout of the WGSL
//! struct they feed (`tests/params.rs`). Reordering a field on one side fails that test.

/// One field of a kernel-parameter struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamField {
    /// Field name (as in the WGSL struct).
    pub name: &'static str,
    /// Byte offset.
    pub offset: usize,
    /// Rust type, as written: `u32`, `i32`, `f32`, `[u32; 4]`, `[i32; 4]`, `[f32; 4]`.
    pub ty: &'static str,
}

/// The layout of one kernel-parameter struct and the WGSL module it feeds.
#[derive(Clone, Debug)]
pub struct ParamsLayout {
    /// The WGSL source of the module, as compiled.
    pub source: String,
    /// The WGSL struct's name in that module.
    pub wgsl_struct: &'static str,
    /// Size of the Rust struct in bytes.
    pub size: usize,
    /// Fields in declaration order.
    pub fields: Vec<ParamField>,
}

/// Parameters of one kernel: plain old data laid out as the WGSL uniform struct it feeds.
pub(crate) trait KernelParams: bytemuck::Pod {
    /// The WGSL struct's name.
    const WGSL_STRUCT: &'static str;
    /// Fields in declaration order.
    fn fields() -> Vec<ParamField>;

    /// The layout, with the module `source` it feeds.
    fn layout(source: String) -> ParamsLayout {
        ParamsLayout {
            source,
            wgsl_struct: Self::WGSL_STRUCT,
            size: std::mem::size_of::<Self>(),
            fields: Self::fields(),
        }
    }
}

/// Declares a kernel-parameter struct for the WGSL struct named by the string:
/// `kernel_params! { /// docs
/// struct MatmulParams: "Params" { m: u32, n: u32, ... } }`.
#[macro_export]
#[doc(hidden)]
macro_rules! kernel_params {
    ($(#[$m:meta])* struct $name:ident : $wgsl:literal { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $($(#[$fm])* pub $field: $ty),*
        }

        impl $crate::runtime::KernelParams for $name {
            const WGSL_STRUCT: &'static str = $wgsl;
            fn fields() -> Vec<$crate::runtime::ParamField> {
                vec![$($crate::runtime::ParamField {
                    name: stringify!($field),
                    offset: std::mem::offset_of!($name, $field),
                    ty: stringify!($ty),
                }),*]
            }
        }
    };
}
