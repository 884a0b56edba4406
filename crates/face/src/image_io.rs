//! Decoding photos: any format the `image` crate reads, EXIF orientation applied, and a cap
//! on decoded pixels checked from the header before any pixel memory is allocated.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::{Error, Result};

/// Default cap on decoded pixels: 80 MP (e.g. 10,000 x 8,000), about 240 MB as RGB.
pub const DEFAULT_MAX_PIXELS: u64 = 80_000_000;

/// Reads and decodes a photo file to RGB (grey and alpha are converted, EXIF orientation
/// applied).
pub fn load_image(path: &std::path::Path, max_pixels: u64) -> Result<RgbImage> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Read { path: shown.clone(), source })?;
    decode_image(&bytes, max_pixels).map_err(|e| e.with_path(&shown))
}

/// Decodes photo bytes to RGB; see [`load_image`].
pub fn decode_image(bytes: &[u8], max_pixels: u64) -> Result<RgbImage> {
    let bad = |reason: String| Error::BadImage { path: "<memory>".into(), reason };
    if bytes.is_empty() {
        return Err(bad("empty file".into()));
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| bad(e.to_string()))?;
    match reader.format() {
        None => return Err(bad("unknown format".into())),
        // The JPEG decoder fills a cut-off file with grey instead of failing.
        Some(image::ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
            return Err(bad("truncated JPEG (no end-of-image marker)".into()))
        }
        Some(_) => {}
    }
    let mut decoder = reader.into_decoder().map_err(|e| bad(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(Error::TooLarge {
            path: "<memory>".into(),
            width,
            height,
            megapixels: pixels as f64 / 1e6,
            limit_mp: max_pixels as f64 / 1e6,
        });
    }
    if pixels == 0 {
        return Err(bad("zero-sized image".into()));
    }
    let orientation = decoder.orientation().map_err(|e| bad(e.to_string()))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| bad(e.to_string()))?;
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}

/// True when a JPEG has an end-of-image marker after its first scan. Header segments are
/// skipped by their lengths, so an EXIF thumbnail's own marker does not count.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut pos = 2; // after SOI
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xff {
            return false;
        }
        let marker = bytes[pos + 1];
        if marker == 0xda {
            // Entropy-coded data follows; a 0xff byte in it is stuffed as ff 00.
            return bytes[pos..].windows(2).any(|w| w == [0xff, 0xd9]);
        }
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        pos += 2 + len;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(image: &DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// The 54-byte header of a 24-bit BMP of the given size, with no pixel data behind it.
    pub(crate) fn huge_bmp_header(width: u32, height: u32) -> Vec<u8> {
        let row = (width * 3).div_ceil(4) * 4;
        let data = row as u64 * height as u64;
        let mut h = Vec::new();
        h.extend_from_slice(b"BM");
        h.extend_from_slice(&((54 + data).min(u32::MAX as u64) as u32).to_le_bytes());
        h.extend_from_slice(&[0, 0, 0, 0]);
        h.extend_from_slice(&54u32.to_le_bytes());
        h.extend_from_slice(&40u32.to_le_bytes());
        h.extend_from_slice(&width.to_le_bytes());
        h.extend_from_slice(&height.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&24u16.to_le_bytes());
        h.extend_from_slice(&[0u8; 24]);
        h
    }

    #[test]
    fn grey_and_rgba_become_rgb() {
        let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(3, 2, image::Luma([7])));
        let rgb = decode_image(&png_bytes(&grey), DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(rgb.dimensions(), (3, 2));
        assert_eq!(rgb.get_pixel(0, 0).0, [7, 7, 7]);
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(2, 2, image::Rgba([1, 2, 3, 0])));
        assert_eq!(decode_image(&png_bytes(&rgba), DEFAULT_MAX_PIXELS).unwrap().get_pixel(1, 1).0, [1, 2, 3]);
    }

    #[test]
    fn bad_bytes_give_clear_errors() {
        assert!(decode_image(b"", DEFAULT_MAX_PIXELS).unwrap_err().to_string().contains("empty"));
        assert!(decode_image(b"hello, not an image", DEFAULT_MAX_PIXELS).is_err());
        let png = png_bytes(&DynamicImage::ImageRgb8(RgbImage::new(64, 64)));
        assert!(decode_image(&png[..png.len() / 2], DEFAULT_MAX_PIXELS).is_err(), "truncated PNG");
    }

    #[test]
    fn huge_image_is_refused_from_its_header() {
        // A 20,000 x 20,000 BMP: the header alone; refusing it must not allocate 1.2 GB.
        let err = decode_image(&huge_bmp_header(20_000, 20_000), DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(matches!(err, Error::TooLarge { width: 20_000, height: 20_000, .. }), "{err}");
        assert!(err.to_string().contains("--max-megapixels"));
    }
}
