//! Saving an image of the app (a screenshot for the README, or the invitation QR code) as
//! a PNG file, written whole or not at all.

use egui::ColorImage;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ScreenshotError {
    #[error("the image is {width}×{height} with {pixels} pixels: nothing to save")]
    BadImage {
        width: usize,
        height: usize,
        pixels: usize,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: PNG encoding failed: {source}")]
    Encode {
        path: PathBuf,
        source: png::EncodingError,
    },
}

/// Writes `image` to `path` as an 8-bit RGBA PNG: first to a temporary file beside it,
/// then renamed over `path`, so a reader never sees half an image.
pub fn save_png(image: &ColorImage, path: &Path) -> Result<(), ScreenshotError> {
    let [width, height] = image.size;
    let bad = || ScreenshotError::BadImage {
        width,
        height,
        pixels: image.pixels.len(),
    };
    if width == 0 || height == 0 || width.checked_mul(height) != Some(image.pixels.len()) {
        return Err(bad());
    }
    let (Ok(png_width), Ok(png_height)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(bad());
    };
    let rgba: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(|pixel| pixel.to_srgba_unmultiplied())
        .collect();
    let tmp = temporary_path(path);
    let written = write_png(&tmp, png_width, png_height, &rgba)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| io_error(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_png(tmp: &Path, width: u32, height: u32, rgba: &[u8]) -> Result<(), ScreenshotError> {
    let encode_error = |source| ScreenshotError::Encode {
        path: tmp.to_path_buf(),
        source,
    };
    let file = File::create(tmp).map_err(|e| io_error(tmp, e))?;
    let mut out = BufWriter::new(file);
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(encode_error)?;
    writer.write_image_data(rgba).map_err(encode_error)?;
    writer.finish().map_err(encode_error)?;
    out.flush().map_err(|e| io_error(tmp, e))?;
    let file = out
        .into_inner()
        .map_err(|e| io_error(tmp, e.into_error()))?;
    file.sync_all().map_err(|e| io_error(tmp, e))
}

/// `.<name>.tmp-<pid>` in the same directory, so the rename stays on one file system.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "screenshot.png".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn io_error(path: &Path, source: std::io::Error) -> ScreenshotError {
    ScreenshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui::Color32;

    fn decode(path: &Path) -> (u32, u32, png::ColorType, Vec<u8>) {
        let decoder = png::Decoder::new(File::open(path).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, info.color_type, buf)
    }

    #[test]
    fn save_png_round_trips_every_pixel() {
        let (width, height) = (37, 11);
        let pixels: Vec<Color32> = (0..width * height)
            .map(|i| match i % 5 {
                0 => Color32::TRANSPARENT,
                1 => Color32::from_rgba_unmultiplied(200, 100, 50, 128),
                _ => Color32::from_rgb((i * 7) as u8, (i * 13) as u8, (i / 3) as u8),
            })
            .collect();
        let image = ColorImage::new([width, height], pixels);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main-window.png");
        save_png(&image, &path).unwrap();

        let (w, h, color, bytes) = decode(&path);
        assert_eq!((w as usize, h as usize), (width, height));
        assert_eq!(color, png::ColorType::Rgba);
        let expected: Vec<u8> = image
            .pixels
            .iter()
            .flat_map(|p| p.to_srgba_unmultiplied())
            .collect();
        assert_eq!(bytes, expected);
        // Opaque pixels come back exactly.
        let decoded = ColorImage::from_rgba_unmultiplied([width, height], &bytes);
        for (i, (got, want)) in decoded.pixels.iter().zip(&image.pixels).enumerate() {
            if want.a() == 255 {
                assert_eq!(got, want, "pixel {i}");
            }
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("main-window.png")]);
    }

    #[test]
    fn save_png_replaces_an_old_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thread.png");
        std::fs::write(&path, b"an older, longer file that is not a png at all").unwrap();
        let image = ColorImage::filled([3, 2], Color32::from_rgb(1, 2, 3));
        save_png(&image, &path).unwrap();
        let (w, h, _, bytes) = decode(&path);
        assert_eq!((w, h), (3, 2));
        assert_eq!(bytes, [1, 2, 3, 255].repeat(6));
    }

    #[test]
    fn save_png_refuses_inconsistent_images_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.png");
        let mut image = ColorImage::filled([4, 4], Color32::WHITE);
        image.pixels.pop();
        assert!(matches!(
            save_png(&image, &path),
            Err(ScreenshotError::BadImage { pixels: 15, .. })
        ));
        let empty = ColorImage::filled([0, 4], Color32::WHITE);
        assert!(matches!(
            save_png(&empty, &path),
            Err(ScreenshotError::BadImage { .. })
        ));
        let missing_dir = dir.path().join("no such dir").join("x.png");
        let ok = ColorImage::filled([2, 2], Color32::WHITE);
        assert!(matches!(
            save_png(&ok, &missing_dir),
            Err(ScreenshotError::Io { .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
