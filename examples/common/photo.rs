//! The photograph of the image examples (`svd_compress`, `conv_filters`): scikit-image's CC0
//! "camera" (see `examples/data/README.md`), embedded at compile time, and grey PNG output.
//! Not an example itself; included with `#[path = "common/photo.rs"]`.

/// `examples/data/camera.png`: 512 × 512, 8-bit grey, CC0 (Lav Varshney).
const CAMERA_PNG: &[u8] = include_bytes!("../data/camera.png");

/// A grey image, row-major, values in [0, 1].
pub struct Photo {
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<f32>,
}

/// The photograph with its 8-bit values over 255; with `shrink` > 1, each `shrink`×`shrink`
/// block averaged into one pixel (the CI size), the edge rows and columns that do not fill a
/// block dropped.
pub fn load(shrink: usize) -> Result<Photo, String> {
    let img = image::load_from_memory(CAMERA_PNG)
        .map_err(|e| format!("decoding camera.png: {e}"))?
        .to_luma8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let s = shrink.max(1);
    let (height, width) = (h / s, w / s);
    if height == 0 || width == 0 {
        return Err(format!("shrinking {h}×{w} by {s} leaves no pixel"));
    }
    let raw = img.as_raw();
    let mut pixels = Vec::with_capacity(height * width);
    for r in 0..height {
        for c in 0..width {
            let mut sum = 0u32;
            for dr in 0..s {
                let row = &raw[(r * s + dr) * w + c * s..][..s];
                sum += row.iter().map(|&v| u32::from(v)).sum::<u32>();
            }
            pixels.push(sum as f32 / (255 * s * s) as f32);
        }
    }
    Ok(Photo {
        height,
        width,
        pixels,
    })
}

/// Writes `pixels` (row-major `height × width`, values in [0, 1], clamped) as an 8-bit grey
/// PNG.
pub fn write_png(
    path: &std::path::Path,
    height: usize,
    width: usize,
    pixels: &[f32],
) -> Result<(), String> {
    if pixels.len() != height * width {
        return Err(format!(
            "{}: {} pixels for a {height}×{width} image",
            path.display(),
            pixels.len()
        ));
    }
    let bytes = pixels
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let img = image::GrayImage::from_raw(width as u32, height as u32, bytes)
        .ok_or_else(|| format!("{}: buffer does not match {height}×{width}", path.display()))?;
    img.save(path)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}
