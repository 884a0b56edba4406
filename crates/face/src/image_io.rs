//! Decoding photos: any format the `image` crate reads, EXIF orientation applied, and a cap
//! on decoded pixels checked from the header before any pixel memory is allocated.

use std::io::Cursor;

use image::metadata::Orientation;
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

/// Decodes photo bytes to RGB; see [`load_image`]. Memory at the peak is what
/// [`decode_memory`] says, at most 8 bytes per allowed pixel.
pub fn decode_image(bytes: &[u8], max_pixels: u64) -> Result<RgbImage> {
    let (decoder, plan) = open_decoder(bytes, max_pixels)?;
    let bad = |e: String| Error::BadImage { path: "<memory>".into(), reason: e };
    // A failed allocation aborts the process; ask first, whatever the pixel limit allows.
    Vec::<u8>::new()
        .try_reserve_exact(usize::try_from(plan.peak_bytes).unwrap_or(usize::MAX))
        .map_err(|_| bad(format!("cannot allocate the {} MB needed to decode it", plan.peak_bytes >> 20)))?;
    let mut image = match plan.png {
        // PNG straight to 8-bit RGB, row by row: a 16-bit RGBA PNG would otherwise take
        // 8 bytes per pixel before the 3 of the result.
        true => DynamicImage::ImageRgb8(decode_png(bytes, plan.width, plan.height)?),
        false => DynamicImage::from_decoder(decoder).map_err(|e| bad(e.to_string()))?,
    };
    image.apply_orientation(plan.orientation);
    Ok(image.into_rgb8())
}

/// Bytes [`decode_image`] holds at its peak for this photo, from its header alone (nothing
/// decoded); the same checks and errors as `decode_image` for what the header shows.
pub fn decode_memory(bytes: &[u8], max_pixels: u64) -> Result<u64> {
    Ok(open_decoder(bytes, max_pixels)?.1.peak_bytes)
}

/// What the header says and how the photo will be decoded.
struct DecodePlan {
    width: u32,
    height: u32,
    orientation: Orientation,
    /// Decoded by [`decode_png`] rather than the `image` crate.
    png: bool,
    peak_bytes: u64,
}

fn open_decoder(bytes: &[u8], max_pixels: u64) -> Result<(impl ImageDecoder + '_, DecodePlan)> {
    let bad = |reason: String| Error::BadImage { path: "<memory>".into(), reason };
    if bytes.is_empty() {
        return Err(bad("empty file".into()));
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| bad(e.to_string()))?;
    let format = reader.format();
    match format {
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
    let png = format == Some(image::ImageFormat::Png);
    let rgb = pixels * 3;
    let native = pixels * decoder.color_type().bytes_per_pixel() as u64;
    let mut peak_bytes = match png {
        // Interlaced PNGs are decoded whole (at most 4 bytes per pixel) before conversion.
        true => rgb + if png_is_interlaced(bytes) { pixels * 4 } else { u64::from(width) * 8 },
        // `into_rgb8` moves an RGB8 image and copies any other.
        false => native + if decoder.color_type() == image::ColorType::Rgb8 { 0 } else { rgb },
    };
    if orientation != Orientation::NoTransforms {
        peak_bytes += rgb; // rotations allocate a second image
    }
    let limit = max_pixels.saturating_mul(8);
    if peak_bytes > limit {
        return Err(bad(format!(
            "{width}x{height} {:?} needs {} MB to decode, over the limit of {} MB",
            decoder.color_type(),
            peak_bytes.div_ceil(1 << 20),
            limit >> 20
        )));
    }
    Ok((decoder, DecodePlan { width, height, orientation, png, peak_bytes }))
}

/// A PNG decoded to 8-bit RGB (16-bit samples stripped, palettes expanded, alpha dropped).
fn decode_png(bytes: &[u8], width: u32, height: u32) -> Result<RgbImage> {
    let bad = |e: png::DecodingError| Error::BadImage { path: "<memory>".into(), reason: e.to_string() };
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // Sizes are bounded by the pixel cap checked before; png's own 64 MiB default is lower.
    decoder.set_limits(png::Limits { bytes: usize::MAX });
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(bad)?;
    let channels = reader.output_color_type().0.samples();
    let row_rgb = width as usize * 3;
    let mut rgb = vec![0u8; row_rgb * height as usize];
    if reader.info().interlaced {
        let mut frame = vec![0u8; reader.output_buffer_size().ok_or(png::DecodingError::LimitsExceeded).map_err(bad)?];
        let info = reader.next_frame(&mut frame).map_err(bad)?;
        for (dst, src) in rgb.chunks_exact_mut(row_rgb).zip(frame.chunks_exact(info.line_size)) {
            samples_to_rgb(src, channels, dst);
        }
    } else {
        for dst in rgb.chunks_exact_mut(row_rgb) {
            let row = reader.next_row().map_err(bad)?.ok_or(png::DecodingError::LimitsExceeded).map_err(bad)?;
            samples_to_rgb(row.data(), channels, dst);
        }
    }
    Ok(RgbImage::from_raw(width, height, rgb).expect("the buffer has width x height x 3 bytes"))
}

/// One row of 8-bit grey, grey+alpha, RGB or RGBA samples as RGB.
fn samples_to_rgb(src: &[u8], channels: usize, dst: &mut [u8]) {
    for (px, out) in src.chunks_exact(channels).zip(dst.chunks_exact_mut(3)) {
        match channels {
            1 | 2 => out.fill(px[0]),
            _ => out.copy_from_slice(&px[..3]),
        }
    }
}

/// The interlace byte of a PNG's IHDR chunk (signature 8 + length 4 + type 4 + 12 bytes in).
fn png_is_interlaced(bytes: &[u8]) -> bool {
    bytes.get(28).is_some_and(|&b| b != 0)
}

/// A PNG of `width` x `height` 16-bit RGBA zeros: kilobytes on the wire, 8 bytes per pixel
/// for a decoder that keeps its samples. For tests and benchmarks of the decode limits.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Sixteen);
    let mut writer = encoder.write_header().expect("writing to memory");
    let mut stream = writer.stream_writer().expect("writing to memory");
    let row = vec![0u8; width as usize * 8];
    for _ in 0..height {
        std::io::Write::write_all(&mut stream, &row).expect("writing to memory");
    }
    stream.finish().expect("writing to memory");
    drop(writer);
    out
}

/// The start of a PNG that claims `width` x `height` RGB pixels: its header and one row of
/// data, the rest never comes. For tests and benchmarks of the decode limits.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    let mut writer = encoder.write_header().expect("writing to memory");
    let mut stream = writer.stream_writer().expect("writing to memory");
    std::io::Write::write_all(&mut stream, &vec![0u8; width as usize * 3]).expect("writing to memory");
    std::io::Write::flush(&mut stream).expect("writing to memory");
    // Unfinished on purpose: finishing would complain of the missing rows.
    std::mem::forget(stream);
    std::mem::forget(writer);
    out
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
    fn sixteen_bit_pngs_decode_to_rgb_at_three_bytes_per_pixel() {
        let rgba16 =
            image::ImageBuffer::from_fn(100, 50, |x, y| image::Rgba([x as u16 * 600, y as u16 * 1200, 65535, 0]));
        let bytes = png_bytes(&DynamicImage::ImageRgba16(rgba16.clone()));
        // Peak: the RGB result and one row, not the 8 bytes per pixel of RGBA16.
        assert_eq!(decode_memory(&bytes, DEFAULT_MAX_PIXELS).unwrap(), 100 * 50 * 3 + 100 * 8);
        let rgb = decode_image(&bytes, DEFAULT_MAX_PIXELS).unwrap();
        let reference = DynamicImage::ImageRgba16(rgba16).into_rgb8();
        for (a, b) in rgb.pixels().zip(reference.pixels()) {
            for (x, y) in a.0.iter().zip(b.0) {
                assert!(x.abs_diff(y) <= 1, "{a:?} vs {b:?}");
            }
        }
        // An 8-bit RGB PNG: the result and one row; a BMP: its own RGB8 buffer, moved.
        let rgb8_png = png_bytes(&DynamicImage::ImageRgb8(RgbImage::new(10, 10)));
        assert_eq!(decode_memory(&rgb8_png, DEFAULT_MAX_PIXELS).unwrap(), 300 + 80);
        assert_eq!(decode_memory(&huge_bmp_header(1000, 1000), DEFAULT_MAX_PIXELS).unwrap(), 3_000_000);
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
        assert!(err.to_string().contains("above the limit of 80.0 MP"), "{err}");
    }

    #[test]
    fn an_allocation_that_cannot_be_made_is_an_error_not_an_abort() {
        // The header of a 1,000,000 x 1,000,000 PNG under a limit that lets it through:
        // 3 TB to decode.
        let err = decode_image(&png_claiming(1_000_000, 1_000_000), 1 << 40).unwrap_err();
        assert!(err.to_string().contains("cannot allocate"), "{err}");
    }
}
