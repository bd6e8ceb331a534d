//! PNG and JPEG bytes to grey levels, within bounds a server can promise:
//!
//! - the size is checked from the header before any pixel is decoded ([`MAX_IMAGE_SIDE`],
//!   [`MAX_IMAGE_PIXELS`]);
//! - rows are made grey as they are decoded, so a decode holds one byte a pixel whatever the
//!   file's colour type and bit depth (a 16-bit RGBA PNG would otherwise take eight);
//! - another thread can stop a decode ([`Cancel`]): a PNG between rows, a JPEG at its next read of
//!   the file;
//! - the ancillary PNG chunks that would be inflated (`iCCP`, `zTXt`, `iTXt`, and `tEXt`) are
//!   skipped unread: nothing reads them, and 1 MiB of `iCCP` can inflate to a gibibyte;
//! - data that ends before the picture does is an error naming the problem, never a picture
//!   padded with grey (zune-jpeg's strict mode; the png crate always).

use std::io::{BufRead, Cursor, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use image::ImageFormat;
use png::{InterlaceInfo, Transformations};
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

/// The largest side of a picture that is decoded; a header claiming more is refused before any
/// pixel is decoded (a 50,000 x 50,000 PNG of a few KiB would otherwise ask for gigabytes).
pub const MAX_IMAGE_SIDE: u32 = 8192;
/// The most pixels a decoded picture may have: 16 mebipixels (4096 x 4096; a 12-megapixel phone
/// photo fits). A digit ends up 20 pixels high; more only costs time and memory: about 2 bytes
/// a pixel for a PNG or a baseline JPEG, up to 10 for a progressive JPEG (docs/serving.md).
pub const MAX_IMAGE_PIXELS: u64 = 16 * 1024 * 1024;

/// What a stopped decode says.
pub const STOPPED: &str = "decoding was stopped before it finished";

/// A flag another thread raises to stop a decode; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every decode watching this flag to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A decoded picture: grey levels, row-major, one byte a pixel.
pub(crate) struct Grey {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) pixels: Vec<u8>,
}

/// Decodes a PNG or JPEG held in memory to grey levels (transparent pixels count as white
/// paper), unless `cancel` is raised first.
pub(crate) fn decode_grey(bytes: &[u8], cancel: &Cancel) -> Result<Grey, String> {
    if cancel.is_cancelled() {
        return Err(STOPPED.into());
    }
    let format = image::guess_format(bytes)
        .map_err(|_| "not a PNG or JPEG image (its first bytes are of no image format)")?;
    match format {
        ImageFormat::Png => png_grey(bytes, cancel),
        ImageFormat::Jpeg => jpeg_grey(bytes, cancel),
        other => Err(format!("a {other:?} image: only PNG and JPEG are read")),
    }
}

/// Refuses pictures larger than [`MAX_IMAGE_SIDE`] on a side or [`MAX_IMAGE_PIXELS`] in all.
fn check_dimensions(width: u32, height: u32) -> Result<(), String> {
    let pixels = u64::from(width) * u64::from(height);
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE || pixels > MAX_IMAGE_PIXELS {
        return Err(format!(
            "the image header claims {width}x{height} pixels: at most {MAX_IMAGE_SIDE} on a side \
             and {MAX_IMAGE_PIXELS} in all are decoded"
        ));
    }
    Ok(())
}

fn png_grey(bytes: &[u8], cancel: &Cancel) -> Result<Grey, String> {
    let failed = |error: png::DecodingError| format!("cannot decode this Png file: {error}");
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_ignore_iccp_chunk(true);
    decoder.set_ignore_text_chunk(true);
    // 8-bit samples of grey, grey and alpha, RGB or RGBA, whatever the file holds.
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|error| format!("cannot read this Png header: {error}"))?;
    let (width, height) = (reader.info().width, reader.info().height);
    check_dimensions(width, height)?;
    let channels = reader.output_color_type().0.samples();
    let w = width as usize;
    let mut pixels = vec![0u8; w * height as usize];
    let mut grey_row = Vec::with_capacity(w);
    let mut line = 0;
    while let Some(row) = reader.next_interlaced_row().map_err(failed)? {
        if cancel.is_cancelled() {
            return Err(STOPPED.into());
        }
        grey_row.clear();
        grey_row.extend(row.data().chunks_exact(channels).map(grey_of));
        match row.interlace() {
            InterlaceInfo::Null(_) => {
                let start = line * w;
                let target = pixels
                    .get_mut(start..start + w)
                    .ok_or("more rows than the header")?;
                target.copy_from_slice(&grey_row);
                line += 1;
            }
            InterlaceInfo::Adam7(pass) => {
                png::expand_interlaced_row(&mut pixels, w, &grey_row, pass, 8);
            }
        }
    }
    Ok(Grey {
        width,
        height,
        pixels,
    })
}

/// One 8-bit pixel of 1 to 4 samples as a grey level: RGB weighted as the `image` crate weighs
/// it (Rec. 709), alpha laid over white paper.
fn grey_of(samples: &[u8]) -> u8 {
    let luma = |rgb: &[u8]| {
        let weighted =
            2126 * u32::from(rgb[0]) + 7152 * u32::from(rgb[1]) + 722 * u32::from(rgb[2]);
        ((weighted + 5_000) / 10_000) as u8
    };
    let over_paper = |value: u8, alpha: u8| {
        let (value, alpha) = (u32::from(value), u32::from(alpha));
        ((value * alpha + 255 * (255 - alpha)) / 255) as u8
    };
    match samples {
        [grey] => *grey,
        [grey, alpha] => over_paper(*grey, *alpha),
        [_, _, _] => luma(samples),
        [r, g, b, alpha] => over_paper(luma(&[*r, *g, *b]), *alpha),
        _ => 0,
    }
}

fn jpeg_grey(bytes: &[u8], cancel: &Cancel) -> Result<Grey, String> {
    // Strict: data that ends early, or a marker inside the scan, is an error rather than the
    // rest of the picture filled in. The size limit is ours, checked below, so that the message
    // is the same as for PNG.
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        .jpeg_set_out_colorspace(ColorSpace::Luma);
    let stopped_or = |what: &str, error: zune_jpeg::errors::DecodeErrors| {
        if cancel.is_cancelled() {
            STOPPED.to_string()
        } else {
            format!("{what}: {error}")
        }
    };
    let mut decoder = JpegDecoder::new_with_options(Stoppable::new(bytes, cancel), options);
    decoder
        .decode_headers()
        .map_err(|error| stopped_or("cannot read this Jpeg header", error))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or("cannot read this Jpeg header: no size")?;
    let (width, height) = (w as u32, h as u32);
    check_dimensions(width, height)?;
    check_scan_data(bytes, w, h)?;
    let pixels = decoder
        .decode()
        .map_err(|error| stopped_or("cannot decode this Jpeg file", error))?;
    if pixels.len() != w * h {
        return Err(format!(
            "cannot decode this Jpeg file: {} grey levels for {width}x{height} pixels",
            pixels.len()
        ));
    }
    Ok(Grey {
        width,
        height,
        pixels,
    })
}

/// Refuses a JPEG whose compressed picture data is too short for its size: every 8x8 block of
/// the picture costs at least one bit in some scan (its DC coefficient). zune-jpeg, strict or
/// not, decodes past an early end-of-image marker as zeros, so a 504-byte file whose header
/// claims 4096x4096 would otherwise be decoded whole, and classified.
fn check_scan_data(bytes: &[u8], width: usize, height: usize) -> Result<(), String> {
    let blocks = width.div_ceil(8) * height.div_ceil(8);
    let needed = blocks.div_ceil(8);
    let held = scan_bytes(bytes);
    if held < needed {
        return Err(format!(
            "the Jpeg data ends early: {held} bytes of picture data for {width}x{height} pixels, \
             which need at least {needed} (a truncated file, or a header claiming more than the \
             file holds)"
        ));
    }
    Ok(())
}

/// The bytes of entropy-coded data in all the scans of a JPEG: after each start-of-scan
/// header, up to the next marker other than a restart marker or a stuffed `FF 00`.
fn scan_bytes(bytes: &[u8]) -> usize {
    let be16 = |at: usize| {
        bytes.get(at..at + 2).map_or(0, |pair| {
            usize::from(u16::from_be_bytes([pair[0], pair[1]]))
        })
    };
    let (mut at, mut total) = (2, 0);
    while at + 1 < bytes.len() {
        if bytes[at] != 0xFF {
            at += 1;
            continue;
        }
        let marker = bytes[at + 1];
        match marker {
            0xD9 => break,
            0xFF => at += 1,
            0x01 | 0xD0..=0xD7 => at += 2,
            0xDA => {
                let start = at + 2 + be16(at + 2);
                // A marker ends the scan, except a stuffed 0xFF (`FF 00`) and restart markers.
                let is_marker =
                    |at: usize| bytes[at] == 0xFF && !matches!(bytes[at + 1], 0x00 | 0xD0..=0xD7);
                let mut end = start;
                while end + 1 < bytes.len() && !is_marker(end) {
                    end += 1;
                }
                total += end.saturating_sub(start);
                at = end.max(at + 2);
            }
            _ => at += 2 + be16(at + 2),
        }
    }
    total
}

/// The file's bytes as a reader that ends early once `cancel` is raised: the JPEG decoder reads
/// as it decodes, so it stops at its next read (strict mode makes the early end an error).
struct Stoppable<'a> {
    bytes: Cursor<&'a [u8]>,
    cancel: &'a Cancel,
}

impl<'a> Stoppable<'a> {
    fn new(bytes: &'a [u8], cancel: &'a Cancel) -> Self {
        Self {
            bytes: Cursor::new(bytes),
            cancel,
        }
    }
}

impl Read for Stoppable<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Ok(0);
        }
        self.bytes.read(buf)
    }
}

impl BufRead for Stoppable<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.cancel.is_cancelled() {
            return Ok(&[]);
        }
        self.bytes.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.bytes.consume(amount);
    }
}

impl Seek for Stoppable<'_> {
    fn seek(&mut self, position: SeekFrom) -> std::io::Result<u64> {
        self.bytes.seek(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageEncoder, Luma};

    /// A 28x28 grey JPEG of a bar, and the offset of its SOF0 height field.
    fn jpeg() -> (Vec<u8>, usize) {
        let picture = GrayImage::from_fn(28, 28, |x, y| {
            Luma([if (8..20).contains(&x) && (4..24).contains(&y) {
                250
            } else {
                5
            }])
        });
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .write_image(picture.as_raw(), 28, 28, image::ExtendedColorType::L8)
            .unwrap();
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        (bytes, sof + 5)
    }

    #[test]
    fn a_whole_jpeg_decodes_and_a_cut_one_is_refused() {
        let (bytes, _) = jpeg();
        let grey = decode_grey(&bytes, &Cancel::new()).unwrap();
        assert_eq!((grey.width, grey.height, grey.pixels.len()), (28, 28, 784));
        assert!(grey.pixels[14 * 28 + 14] > 200 && grey.pixels[0] < 50);
        let error = decode_grey(&bytes[..bytes.len() / 2], &Cancel::new())
            .err()
            .unwrap();
        assert!(error.contains("Jpeg"), "{error}");
    }

    #[test]
    fn a_jpeg_header_claiming_more_than_its_data_is_refused() {
        let (mut bytes, height) = jpeg();
        bytes[height..height + 2].copy_from_slice(&4096u16.to_be_bytes());
        bytes[height + 2..height + 4].copy_from_slice(&4096u16.to_be_bytes());
        let error = decode_grey(&bytes, &Cancel::new()).err().unwrap();
        assert!(error.contains("the Jpeg data ends early"), "{error}");
        bytes[height..height + 2].copy_from_slice(&6000u16.to_be_bytes());
        bytes[height + 2..height + 4].copy_from_slice(&8000u16.to_be_bytes());
        let error = decode_grey(&bytes, &Cancel::new()).err().unwrap();
        assert!(error.contains("8000x6000"), "{error}");
    }

    #[test]
    fn a_raised_flag_stops_the_decode() {
        let (bytes, _) = jpeg();
        let cancel = Cancel::new();
        cancel.cancel();
        assert_eq!(decode_grey(&bytes, &cancel).err().as_deref(), Some(STOPPED));
    }

    #[test]
    fn png_colour_types_become_the_image_crates_grey() {
        let rgba = image::RgbaImage::from_fn(5, 3, |x, y| {
            image::Rgba([(x * 50) as u8, (y * 80) as u8, 30, (x * 60) as u8])
        });
        let mut bytes = Vec::new();
        image::DynamicImage::ImageRgba8(rgba.clone())
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        let grey = decode_grey(&bytes, &Cancel::new()).unwrap();
        let expected: Vec<u8> = image::DynamicImage::ImageRgba8(rgba)
            .to_luma_alpha8()
            .pixels()
            .map(|p| grey_of(&p.0))
            .collect();
        assert_eq!(grey.pixels, expected);
    }
}
