//! Size conversions for kernel parameters.

use crate::error::{Error, Result};

/// `v` as a kernel's `u32`, or an error naming `what` and the 32-bit index range.
pub(crate) fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::InvalidArgument(format!(
            "{what} = {v} exceeds the GPU kernels' 32-bit index range"
        ))
    })
}
