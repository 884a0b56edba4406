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
    let bad = |e: String| Error::BadImage { path: None, reason: e };
    // A failed allocation aborts the process; ask first, whatever the pixel limit allows.
    Vec::<u8>::new()
        .try_reserve_exact(usize::try_from(plan.peak_bytes).unwrap_or(usize::MAX))
        .map_err(|_| bad(format!("cannot allocate the {} MB needed to decode it", plan.peak_bytes >> 20)))?;
    let mut image = match decoder {
        // PNG straight to 8-bit RGB, row by row: a 16-bit RGBA PNG would otherwise take
        // 8 bytes per pixel before the 3 of the result.
        None => DynamicImage::ImageRgb8(decode_png(bytes, plan.width, plan.height)?),
        Some(decoder) => DynamicImage::from_decoder(decoder).map_err(|e| bad(e.to_string()))?,
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
    peak_bytes: u64,
}

/// Memory the PNG decoder may take beyond its pixel rows: the chunks before the image data
/// (header, palette, EXIF) and its inflate state. Colour profiles and text are skipped, never
/// inflated: a few kilobytes of compressed profile can inflate to gigabytes.
const PNG_CHUNK_BYTES: usize = 2 << 20;

/// The photo's decoder (`None`: a PNG, decoded by [`decode_png`]) and its plan, from the
/// header alone.
fn open_decoder(bytes: &[u8], max_pixels: u64) -> Result<(Option<impl ImageDecoder + '_>, DecodePlan)> {
    let bad = |reason: String| Error::BadImage { path: None, reason };
    if bytes.is_empty() {
        return Err(bad("empty file".into()));
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| bad(e.to_string()))?;
    let format = reader.format();
    match format {
        None => return Err(bad("unknown format".into())),
        Some(image::ImageFormat::Png) => return Ok((None, png_plan(bytes, max_pixels)?)),
        // The JPEG decoder fills a cut-off file with grey instead of failing.
        Some(image::ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
            return Err(bad("truncated JPEG (no end-of-image marker)".into()))
        }
        Some(_) => {}
    }
    let mut decoder = reader.into_decoder().map_err(|e| bad(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    let pixels = check_size(width, height, max_pixels)?;
    let orientation = decoder.orientation().map_err(|e| bad(e.to_string()))?;
    let color = decoder.color_type();
    let rgb = pixels * 3;
    // `into_rgb8` moves an RGB8 image and copies any other.
    let mut peak_bytes =
        pixels * color.bytes_per_pixel() as u64 + if color == image::ColorType::Rgb8 { 0 } else { rgb };
    if format == Some(image::ImageFormat::Jpeg) {
        peak_bytes += jpeg_progressive_coefficient_bytes(bytes);
    }
    let plan = finish_plan(width, height, orientation, peak_bytes, max_pixels, &format!("{color:?}"))?;
    Ok((Some(decoder), plan))
}

/// Refuses a size of zero or over `max_pixels`; the pixel count.
fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<u64> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(Error::TooLarge {
            path: None,
            width,
            height,
            megapixels: pixels as f64 / 1e6,
            limit_mp: max_pixels as f64 / 1e6,
        });
    }
    if pixels == 0 {
        return Err(Error::BadImage { path: None, reason: "zero-sized image".into() });
    }
    Ok(pixels)
}

/// Adds what a rotation costs and refuses a plan over 8 bytes per allowed pixel.
fn finish_plan(
    width: u32,
    height: u32,
    orientation: Orientation,
    mut peak_bytes: u64,
    max_pixels: u64,
    kind: &str,
) -> Result<DecodePlan> {
    if orientation != Orientation::NoTransforms {
        peak_bytes += u64::from(width) * u64::from(height) * 3; // rotations allocate a second image
    }
    let limit = max_pixels.saturating_mul(8);
    if peak_bytes > limit {
        return Err(Error::BadImage {
            path: None,
            reason: format!(
                "{width}x{height} {kind} needs {} MB to decode, over the limit of {} MB",
                peak_bytes.div_ceil(1 << 20),
                limit >> 20
            ),
        });
    }
    Ok(DecodePlan { width, height, orientation, peak_bytes })
}

/// A PNG's plan from its chunks up to the image data, read by the png crate alone under
/// [`PNG_CHUNK_BYTES`] (the `image` crate's header pass would inflate a colour profile).
fn png_plan(bytes: &[u8], max_pixels: u64) -> Result<DecodePlan> {
    let reader = png_decoder(bytes).read_info().map_err(png_error)?;
    let info = reader.info();
    let (width, height) = (info.width, info.height);
    let pixels = check_size(width, height, max_pixels)?;
    let orientation =
        info.exif_metadata.as_deref().and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms);
    // Interlaced PNGs are decoded whole (at most 4 bytes per pixel) before conversion; others
    // a row at a time.
    let rows = if info.interlaced { pixels * 4 } else { u64::from(width) * 8 };
    let peak_bytes = pixels * 3 + rows + PNG_CHUNK_BYTES as u64 + png_row_buffers(width) as u64;
    let kind = format!("{:?} {}-bit PNG", info.color_type, info.bit_depth as u8);
    finish_plan(width, height, orientation, peak_bytes, max_pixels, &kind)
}

/// The png crate's own row buffers (current and previous raw rows, at most 8 bytes a pixel,
/// twice over for its unfiltering).
fn png_row_buffers(width: u32) -> usize {
    (width as usize * 8 + 1) * 4
}

/// A png decoder to 8-bit samples that skips colour profiles and text and allocates at most
/// [`PNG_CHUNK_BYTES`] and its row buffers of its own (the width read from IHDR, the first
/// chunk; the decoder refuses a file where it is not).
fn png_decoder(bytes: &[u8]) -> png::Decoder<Cursor<&[u8]>> {
    let width = bytes.get(16..20).map_or(0, |w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    let limit = PNG_CHUNK_BYTES + png_row_buffers(width);
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: limit });
    decoder.set_ignore_iccp_chunk(true);
    decoder.set_ignore_text_chunk(true);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    decoder
}

fn png_error(e: png::DecodingError) -> Error {
    let reason = match e {
        png::DecodingError::LimitsExceeded => {
            format!("its chunks need more than the {} MB a PNG may use beyond its pixels", PNG_CHUNK_BYTES >> 20)
        }
        e => e.to_string(),
    };
    Error::BadImage { path: None, reason }
}

/// A PNG decoded to 8-bit RGB (16-bit samples stripped, palettes expanded, alpha dropped).
fn decode_png(bytes: &[u8], width: u32, height: u32) -> Result<RgbImage> {
    let mut reader = png_decoder(bytes).read_info().map_err(png_error)?;
    let channels = reader.output_color_type().0.samples();
    let row_rgb = width as usize * 3;
    let mut rgb = vec![0u8; row_rgb * height as usize];
    let limits = || png_error(png::DecodingError::LimitsExceeded);
    if reader.info().interlaced {
        let mut frame = vec![0u8; reader.output_buffer_size().ok_or_else(limits)?];
        let info = reader.next_frame(&mut frame).map_err(png_error)?;
        for (dst, src) in rgb.chunks_exact_mut(row_rgb).zip(frame.chunks_exact(info.line_size)) {
            samples_to_rgb(src, channels, dst);
        }
    } else {
        for dst in rgb.chunks_exact_mut(row_rgb) {
            let row = reader.next_row().map_err(png_error)?.ok_or_else(limits)?;
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

/// A `width` x `height` grey PNG with a colour profile (iCCP chunk) that inflates to
/// `profile_bytes` zeros: about a thousandth of that on the wire. For tests and benchmarks
/// of the decode limits.
pub fn png_profile_bomb(width: u32, height: u32, profile_bytes: u64) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut plain = Vec::new();
    let mut encoder = png::Encoder::new(&mut plain, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    let mut writer = encoder.write_header().expect("writing to memory");
    writer.write_image_data(&vec![128u8; (width * height) as usize]).expect("writing to memory");
    writer.finish().expect("writing to memory");
    // One sync-flushed deflate segment of 16 MiB of zeros, repeated: each copy only refers
    // back into zeros, so the whole is one valid stream, made in milliseconds.
    const SEGMENT: usize = 16 << 20;
    let mut deflate = Compress::new(Compression::best(), false);
    let mut segment = Vec::with_capacity(SEGMENT / 500);
    deflate.compress_vec(&vec![0u8; SEGMENT], &mut segment, FlushCompress::Sync).expect("deflate in memory");
    let copies = profile_bytes.div_ceil(SEGMENT as u64);
    let mut profile = b"bomb\0\0".to_vec(); // name, compression method 0
    profile.extend_from_slice(&[0x78, 0xda]); // zlib header
    for _ in 0..copies {
        profile.extend_from_slice(&segment);
    }
    profile.extend_from_slice(&[0x03, 0x00]); // an empty final block
    let inflated = copies * SEGMENT as u64;
    let adler = ((inflated % 65521) << 16 | 1) as u32; // of zeros: a = 1, b = n mod 65521
    profile.extend_from_slice(&adler.to_be_bytes());
    let mut chunk = (profile.len() as u32).to_be_bytes().to_vec();
    let crc_start = chunk.len();
    chunk.extend_from_slice(b"iCCP");
    chunk.extend_from_slice(&profile);
    let crc = crc32(&chunk[crc_start..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    // After the signature (8) and IHDR (4 + 4 + 13 + 4).
    let mut out = plain[..33].to_vec();
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&plain[33..]);
    out
}

/// A flat grey `width` x `height` progressive JPEG (4:2:0): kilobytes on the wire, and a
/// decoder that keeps every DCT coefficient until the last scan. For tests and benchmarks
/// of the decode limits.
pub fn progressive_jpeg(width: u16, height: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 75);
    encoder.set_progressive(true);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    let pixels = vec![128u8; usize::from(width) * usize::from(height) * 3];
    encoder.encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb).expect("encoding in memory");
    out
}

/// The CRC-32 of PNG chunks (ISO 3309).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
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

/// A JPEG's header segments before its first scan, as (marker, payload), and where the scan
/// starts (`None`: the file ends or breaks first). Segments are skipped by their lengths, so
/// an EXIF thumbnail's own markers are not read as the photo's.
fn jpeg_header(bytes: &[u8]) -> (Vec<(u8, &[u8])>, Option<usize>) {
    let mut segments = Vec::new();
    let mut pos = 2; // after SOI
    while pos + 4 <= bytes.len() && bytes[pos] == 0xff {
        let marker = bytes[pos + 1];
        if marker == 0xda {
            return (segments, Some(pos));
        }
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        segments.push((marker, bytes.get(pos + 4..pos + 2 + len).unwrap_or(&[])));
        pos += 2 + len;
    }
    (segments, None)
}

/// True when a JPEG has an end-of-image marker after its first scan.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    // Entropy-coded data follows the scan marker; a 0xff byte in it is stuffed as ff 00.
    jpeg_header(bytes).1.is_some_and(|scan| bytes[scan..].windows(2).any(|w| w == [0xff, 0xd9]))
}

/// The DCT coefficients a progressive JPEG's decoder keeps for the whole photo until its
/// last scan: 2 bytes per coefficient, each component at its own sampling, padded to whole
/// MCUs. 0 for a baseline JPEG, decoded a row of MCUs at a time.
fn jpeg_progressive_coefficient_bytes(bytes: &[u8]) -> u64 {
    let (segments, _) = jpeg_header(bytes);
    let Some((_, sof)) = segments.iter().find(|(marker, _)| *marker == 0xc2) else { return 0 };
    let Some(&[_, h1, h0, w1, w0, n]) = sof.get(..6) else { return 0 };
    let (height, width) = (u64::from(u16::from_be_bytes([h1, h0])), u64::from(u16::from_be_bytes([w1, w0])));
    let sampling: Vec<(u64, u64)> =
        sof[6..].chunks_exact(3).take(usize::from(n)).map(|c| (u64::from(c[1] >> 4), u64::from(c[1] & 15))).collect();
    let h_max = sampling.iter().map(|s| s.0).max().unwrap_or(1).max(1);
    let v_max = sampling.iter().map(|s| s.1).max().unwrap_or(1).max(1);
    let (mcus_x, mcus_y) = (width.div_ceil(8 * h_max), height.div_ceil(8 * v_max));
    sampling.iter().map(|(h, v)| mcus_x * h * 8 * mcus_y * v * 8 * 2).sum()
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
        // Peak: the RGB result, one row and the png crate's own allowance, not the 8 bytes
        // per pixel of RGBA16.
        let png_own = (PNG_CHUNK_BYTES + png_row_buffers(100)) as u64;
        assert_eq!(decode_memory(&bytes, DEFAULT_MAX_PIXELS).unwrap(), 100 * 50 * 3 + 100 * 8 + png_own);
        let rgb = decode_image(&bytes, DEFAULT_MAX_PIXELS).unwrap();
        let reference = DynamicImage::ImageRgba16(rgba16).into_rgb8();
        for (a, b) in rgb.pixels().zip(reference.pixels()) {
            for (x, y) in a.0.iter().zip(b.0) {
                assert!(x.abs_diff(y) <= 1, "{a:?} vs {b:?}");
            }
        }
        // An 8-bit RGB PNG: the result, one row and the allowance; a BMP: its own RGB8 buffer, moved.
        let rgb8_png = png_bytes(&DynamicImage::ImageRgb8(RgbImage::new(10, 10)));
        let png_own = (PNG_CHUNK_BYTES + png_row_buffers(10)) as u64;
        assert_eq!(decode_memory(&rgb8_png, DEFAULT_MAX_PIXELS).unwrap(), 300 + 80 + png_own);
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
    fn colour_profiles_are_skipped_not_inflated() {
        // 1 GiB of profile in about a megabyte: decoded with the profile skipped, and the
        // plan counts the chunk allowance, not the profile.
        let bomb = png_profile_bomb(64, 48, 1 << 30);
        assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
        let peak = decode_memory(&bomb, DEFAULT_MAX_PIXELS).unwrap();
        assert!(peak < 3 << 20, "{peak} bytes planned");
        let rgb = decode_image(&bomb, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!((rgb.dimensions(), rgb.get_pixel(5, 5).0), ((64, 48), [128, 128, 128]));
        // The png crate itself reads the profile as valid: the bomb is a real one.
        let mut decoder = png::Decoder::new_with_limits(Cursor::new(&bomb[..]), png::Limits { bytes: 1 << 31 });
        decoder.set_ignore_iccp_chunk(false);
        let reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().icc_profile.as_ref().map(|p| p.len()), Some(1 << 30));
    }

    #[test]
    fn wide_palette_pngs_decode_under_the_row_allowance() {
        let (width, height) = (20_000u32, 3u32);
        let mut indexed = Vec::new();
        let mut encoder = png::Encoder::new(&mut indexed, width, height);
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_palette(vec![0, 0, 0, 9, 8, 7]);
        let mut writer = encoder.write_header().unwrap();
        let data: Vec<u8> = (0..width * height).map(|i| (i % 2) as u8).collect();
        writer.write_image_data(&data).unwrap();
        writer.finish().unwrap();
        let rgb = decode_image(&indexed, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!((rgb.get_pixel(0, 0).0, rgb.get_pixel(19_999, 2).0), ([0, 0, 0], [9, 8, 7]));
    }

    #[test]
    fn progressive_jpegs_count_their_coefficients() {
        let progressive = progressive_jpeg(1000, 800);
        let mut baseline = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(RgbImage::from_pixel(1000, 800, image::Rgb([128, 128, 128])))
            .write_to(&mut baseline, image::ImageFormat::Jpeg)
            .unwrap();
        assert_eq!(decode_memory(baseline.get_ref(), DEFAULT_MAX_PIXELS).unwrap(), 1000 * 800 * 3);
        // 4:2:0 in 16x16 MCUs: luma 1008 x 800 and two chroma planes of 504 x 400, 2 bytes each.
        let coefficients = (1008 * 800 + 2 * 504 * 400) * 2;
        assert_eq!(decode_memory(&progressive, DEFAULT_MAX_PIXELS).unwrap(), 1000 * 800 * 3 + coefficients);
        assert_eq!(decode_image(&progressive, DEFAULT_MAX_PIXELS).unwrap().dimensions(), (1000, 800));
    }

    #[test]
    fn an_allocation_that_cannot_be_made_is_an_error_not_an_abort() {
        // The header of a 1,000,000 x 1,000,000 PNG under a limit that lets it through:
        // 3 TB to decode.
        let err = decode_image(&png_claiming(1_000_000, 1_000_000), 1 << 40).unwrap_err();
        assert!(err.to_string().contains("cannot allocate"), "{err}");
    }
}
