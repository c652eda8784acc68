//! The element types of tensors, below every other module (the tensor, the numeric references
//! and the half-precision conversions all name them).

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: all values.
    F32,
    /// 32-bit unsigned integer: indices (argmax, class targets).
    U32,
    /// IEEE binary16 (numpy's float16): stored two per 32-bit word on the GPU, widened exactly
    /// to f32 for arithmetic (every backend: no shader feature needed).
    F16,
    /// bfloat16 (f32's top 16 bits): stored like [`DType::F16`]; numpy has no bfloat16, so it
    /// enters and leaves `.npy` files as float32.
    BF16,
}

impl DType {
    /// Name as numpy spells it.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::U32 => "uint32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
        }
    }

    /// Whether this is a half-precision float type ([`DType::F16`] or [`DType::BF16`]).
    pub fn is_half(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }

    /// Whether this is a float type (float32, float16 or bfloat16).
    pub fn is_float(self) -> bool {
        self == DType::F32 || self.is_half()
    }

    /// Bytes `len` elements of this type take in a GPU buffer: four each, or two each for the
    /// half types, packed two per 32-bit word (the last word zero-padded).
    pub(crate) fn storage_bytes(self, len: usize) -> usize {
        if self.is_half() {
            len.div_ceil(2) * 4
        } else {
            len * 4
        }
    }
}
