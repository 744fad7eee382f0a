//! An invitation string drawn as a QR code image, for the admin's invitation screen.

use egui::{Color32, ColorImage};
use qrcode::{Color, QrCode};

/// Light modules around the code, as the QR standard asks.
const QUIET_ZONE: usize = 4;
/// The image is at least this wide, so a phone camera reads it off a screen.
const MIN_WIDTH_PX: usize = 256;
/// Longer text is refused before encoding; a version 40 code at the default error
/// correction holds at most 2331 bytes anyway.
pub const MAX_TEXT_BYTES: usize = 2331;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    #[error("the text is too long for a QR code ({len} bytes; at most {MAX_TEXT_BYTES})")]
    TooLong { len: usize },
    #[error("the text cannot be drawn as a QR code: {0}")]
    Encode(qrcode::types::QrError),
}

/// Draws `text` as a black-on-white QR code with a quiet zone, whole pixels per module.
pub fn qr_image(text: &str) -> Result<ColorImage, QrError> {
    let too_long = || QrError::TooLong { len: text.len() };
    if text.len() > MAX_TEXT_BYTES {
        return Err(too_long());
    }
    let code = QrCode::new(text.as_bytes()).map_err(|e| match e {
        qrcode::types::QrError::DataTooLong => too_long(),
        other => QrError::Encode(other),
    })?;
    let modules = code.width();
    let colors = code.to_colors();
    let side_modules = modules + 2 * QUIET_ZONE;
    let scale = MIN_WIDTH_PX.div_ceil(side_modules);
    let side = side_modules * scale;
    let mut pixels = vec![Color32::WHITE; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (row, column) = (index / modules, index % modules);
        let top = (row + QUIET_ZONE) * scale;
        let left = (column + QUIET_ZONE) * scale;
        for y in top..top + scale {
            pixels[y * side + left..y * side + left + scale].fill(Color32::BLACK);
        }
    }
    Ok(ColorImage::new([side, side], pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITATION: &str = "huddle-invite:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4_QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl9gYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-f4A";

    fn module_size(image: &ColorImage) -> usize {
        // The top-left finder pattern starts, dark, right after the quiet zone.
        let side = image.size[0];
        let first_dark = (0..side)
            .find(|&x| image.pixels[x * side + x] == Color32::BLACK)
            .unwrap();
        assert_eq!(first_dark % QUIET_ZONE, 0);
        first_dark / QUIET_ZONE
    }

    #[test]
    fn qr_image_is_square_large_enough_with_a_white_quiet_zone() {
        for text in ["x", INVITATION, &"A".repeat(1500)] {
            let image = qr_image(text).unwrap();
            let [width, height] = image.size;
            assert_eq!(width, height);
            assert!(width >= MIN_WIDTH_PX, "{width}");
            assert_eq!(image.pixels.len(), width * height);
            let scale = module_size(&image);
            assert_eq!(width % scale, 0);
            let modules = width / scale - 2 * QUIET_ZONE;
            assert_eq!(modules, QrCode::new(text).unwrap().width());
            let zone = QUIET_ZONE * scale;
            for y in 0..height {
                for x in 0..width {
                    let inside =
                        (zone..width - zone).contains(&x) && (zone..height - zone).contains(&y);
                    let pixel = image.pixels[y * width + x];
                    assert!(pixel == Color32::BLACK || pixel == Color32::WHITE);
                    if !inside {
                        assert_eq!(pixel, Color32::WHITE, "quiet zone at {x},{y}");
                    }
                }
            }
            let dark = image
                .pixels
                .iter()
                .filter(|p| **p == Color32::BLACK)
                .count();
            let light = image.pixels.len() - dark;
            assert!(dark > 0 && light > 0);
            assert_eq!(dark % (scale * scale), 0, "whole modules only");
        }
    }

    #[test]
    fn qr_image_draws_each_module_of_the_code() {
        let image = qr_image(INVITATION).unwrap();
        let code = QrCode::new(INVITATION).unwrap();
        let scale = module_size(&image);
        let side = image.size[0];
        let modules = code.width();
        for (index, color) in code.to_colors().into_iter().enumerate() {
            let (row, column) = (index / modules, index % modules);
            let center_y = (row + QUIET_ZONE) * scale + scale / 2;
            let center_x = (column + QUIET_ZONE) * scale + scale / 2;
            let expected = if color == Color::Dark {
                Color32::BLACK
            } else {
                Color32::WHITE
            };
            assert_eq!(image.pixels[center_y * side + center_x], expected);
        }
        assert_ne!(qr_image("another invitation").unwrap().pixels, image.pixels);
    }

    #[test]
    fn qr_image_refuses_text_too_long() {
        let long = "A".repeat(MAX_TEXT_BYTES + 1);
        assert_eq!(qr_image(&long), Err(QrError::TooLong { len: long.len() }));
        // The longest text allowed still fits the largest code.
        let longest = "é".repeat(MAX_TEXT_BYTES / 2) + "x";
        assert_eq!(longest.len(), MAX_TEXT_BYTES);
        let image = qr_image(&longest).unwrap();
        assert_eq!(image.size[0], (177 + 2 * QUIET_ZONE) * 2);
    }
}
