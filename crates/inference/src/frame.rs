//! Classifying single images with a trained run: PNG or JPEG files of any size and colour made
//! to look like MNIST digits, or images of an IDX file.
//!
//! MNIST digits are light on a dark background, scaled to fit a 20x20 box (aspect ratio kept,
//! anti-aliased) and placed in a 28x28 field so that their centre of mass is at its centre.
//! [`prepare_grey`] does the same to any picture of a digit.

use std::path::{Path, PathBuf};

use data::idx::{read_images, read_labels};
use data::{IMAGE_COLS, IMAGE_PIXELS, IMAGE_ROWS};
use image::imageops::FilterType;

use crate::InferenceError;
use crate::decode::{Cancel, decode_grey};

/// Side of the box the digit is scaled into, as MNIST's.
const DIGIT_BOX: u32 = 20;
/// Where MNIST puts the centre of mass (measured on the test set: 14.0, 14.0).
const CENTRE: f64 = 14.0;
/// Below this contrast between the digit and the background, there is no digit.
const MIN_CONTRAST: f64 = 40.0;
/// Grey levels within this share of the contrast above the background count as background
/// (paper texture, JPEG noise).
const NOISE_SHARE: f64 = 0.2;

/// Turns a grey picture (`width` x `height`, row-major, one byte per pixel) into an MNIST
/// digit: `28 * 28` grey levels, light digit on a dark background.
///
/// - When the border of the picture is light, it is inverted (dark ink on paper becomes MNIST's
///   light ink on black).
/// - A 28x28 picture is taken as framed like MNIST already: only inverted when light.
/// - Any other size is cropped to the digit (grey levels in the lowest fifth between
///   background and ink are background), scaled so its longer side is 20 pixels, and placed so
///   its centre of mass is at the centre of the 28x28 field.
///
/// Fails when the picture has no contrast to find a digit in.
pub fn prepare_grey(width: u32, height: u32, grey: &[u8]) -> Result<Vec<u8>, String> {
    prepare_owned(width, height, grey.to_vec())
}

/// [`prepare_grey`] on a picture it may overwrite: a decoded one is framed without a copy.
fn prepare_owned(width: u32, height: u32, mut pixels: Vec<u8>) -> Result<Vec<u8>, String> {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 {
        return Err("the image is empty (0 pixels)".into());
    }
    if pixels.len() != w * h {
        return Err(format!(
            "{} grey levels for a {width}x{height} image",
            pixels.len()
        ));
    }
    let (background, peak) = ink_on_black(&mut pixels, w, h)?;
    if w == IMAGE_COLS && h == IMAGE_ROWS {
        return Ok(pixels);
    }
    // In place: a decoded picture is the largest buffer a decode holds.
    stretch(&mut pixels, background, peak);
    let crop = crop_to_ink(&pixels, w, h);
    let digit = fit_into_box(&crop);
    Ok(centre_by_mass(&digit))
}

/// Light ink on a black background, as MNIST's: inverted when the border is light. Returns the
/// background and the ink's peak grey levels, or an error when there is no ink to speak of.
fn ink_on_black(pixels: &mut [u8], w: usize, h: usize) -> Result<(u8, u8), String> {
    let background = border_median(pixels, w, h);
    let background = if background > 127 {
        pixels.iter_mut().for_each(|p| *p = 255 - *p);
        255 - background
    } else {
        background
    };
    let peak = pixels.iter().copied().max().unwrap_or(0);
    let contrast = f64::from(peak) - f64::from(background);
    if contrast < MIN_CONTRAST {
        return Err(format!(
            "no digit found: the image is nearly uniform (grey levels {}..{} against a \
             background of {background}, after inverting a light background)",
            pixels.iter().copied().min().unwrap_or(0),
            peak
        ));
    }
    Ok((background, peak))
}

/// Noise and background to 0, the ink's peak to 255.
fn stretch(pixels: &mut [u8], background: u8, peak: u8) {
    let contrast = f64::from(peak) - f64::from(background);
    let low = f64::from(background) + NOISE_SHARE * contrast;
    let span = f64::from(peak) - low;
    pixels.iter_mut().for_each(|p| {
        *p = ((f64::from(*p) - low) / span * 255.0)
            .clamp(0.0, 255.0)
            .round() as u8;
    });
}

/// The bounding box of the inked (non-zero) pixels, cut out.
fn crop_to_ink(stretched: &[u8], w: usize, h: usize) -> image::GrayImage {
    let inked = |i: usize| stretched[i] > 0;
    let (mut left, mut right, mut top, mut bottom) = (w, 0, h, 0);
    for y in 0..h {
        for x in 0..w {
            if inked(y * w + x) {
                left = left.min(x);
                right = right.max(x);
                top = top.min(y);
                bottom = bottom.max(y);
            }
        }
    }
    let (crop_w, crop_h) = (right - left + 1, bottom - top + 1);
    let mut crop = image::GrayImage::new(crop_w as u32, crop_h as u32);
    for y in 0..crop_h {
        for x in 0..crop_w {
            crop.put_pixel(
                x as u32,
                y as u32,
                image::Luma([stretched[(top + y) * w + left + x]]),
            );
        }
    }
    crop
}

/// The longer side scaled to the 20x20 box, the aspect ratio kept.
fn fit_into_box(crop: &image::GrayImage) -> image::GrayImage {
    let (crop_w, crop_h) = crop.dimensions();
    let scale = f64::from(DIGIT_BOX) / f64::from(crop_w.max(crop_h));
    let new_w = ((f64::from(crop_w) * scale).round() as u32).clamp(1, DIGIT_BOX);
    let new_h = ((f64::from(crop_h) * scale).round() as u32).clamp(1, DIGIT_BOX);
    image::imageops::resize(crop, new_w, new_h, FilterType::Triangle)
}

/// The digit placed in the 28x28 field with its centre of mass in the middle, its peak at 255.
fn centre_by_mass(digit: &image::GrayImage) -> Vec<u8> {
    let (new_w, new_h) = digit.dimensions();
    let digit_peak = digit.pixels().map(|p| p.0[0]).max().unwrap_or(0).max(1);
    let (mut mass, mut mass_x, mut mass_y) = (0.0, 0.0, 0.0);
    for (x, y, pixel) in digit.enumerate_pixels() {
        let value = f64::from(pixel.0[0]);
        mass += value;
        mass_x += value * f64::from(x);
        mass_y += value * f64::from(y);
    }
    let (offset_x, offset_y) = if mass > 0.0 {
        (
            (CENTRE - mass_x / mass).round() as i64,
            (CENTRE - mass_y / mass).round() as i64,
        )
    } else {
        (
            i64::from((IMAGE_COLS as u32 - new_w) / 2),
            i64::from((IMAGE_ROWS as u32 - new_h) / 2),
        )
    };
    let mut field = vec![0u8; IMAGE_PIXELS];
    for (x, y, pixel) in digit.enumerate_pixels() {
        let (fx, fy) = (i64::from(x) + offset_x, i64::from(y) + offset_y);
        if (0..IMAGE_COLS as i64).contains(&fx) && (0..IMAGE_ROWS as i64).contains(&fy) {
            let value = u32::from(pixel.0[0]) * 255 / u32::from(digit_peak);
            field[fy as usize * IMAGE_COLS + fx as usize] = value.min(255) as u8;
        }
    }
    field
}

/// The median grey level of the outer frame of the picture (a twentieth of its smaller side,
/// at least one pixel).
fn border_median(pixels: &[u8], w: usize, h: usize) -> u8 {
    let frame = (w.min(h) / 20).max(1);
    let mut border: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| x < frame || y < frame || x + frame >= w || y + frame >= h)
        .map(|(x, y)| pixels[y * w + x])
        .collect();
    border.sort_unstable();
    border[border.len() / 2]
}

/// An image decoded by the `image` crate, made into an MNIST digit (see [`prepare_grey`]).
/// Transparent pixels count as white paper.
pub fn prepare_image(image: &image::DynamicImage) -> Result<Vec<u8>, String> {
    let with_alpha = image.to_luma_alpha8();
    let grey: Vec<u8> = with_alpha
        .pixels()
        .map(|pixel| {
            let [value, alpha] = pixel.0;
            let (value, alpha) = (u32::from(value), u32::from(alpha));
            ((value * alpha + 255 * (255 - alpha)) / 255) as u8
        })
        .collect();
    prepare_grey(image.width(), image.height(), &grey)
}

/// Reads a PNG or JPEG file and makes it an MNIST digit (see [`digit_from_bytes`]).
pub fn load_digit(path: &Path) -> Result<Vec<u8>, InferenceError> {
    let bytes = std::fs::read(path).map_err(|source| InferenceError::Io {
        what: format!("cannot read {}", path.display()),
        source,
    })?;
    digit_from_bytes(&bytes).map_err(|message| InferenceError::Image {
        path: path.to_path_buf(),
        message,
    })
}

/// Decodes a PNG or JPEG held in memory and makes it an MNIST digit (see [`prepare_grey`]).
/// Other formats, truncated or corrupt files, and headers claiming more than
/// [`MAX_IMAGE_SIDE`](crate::MAX_IMAGE_SIDE) pixels on a side or
/// [`MAX_IMAGE_PIXELS`](crate::MAX_IMAGE_PIXELS) in all are refused with what is wrong, the size
/// ones before any pixel is decoded.
pub fn digit_from_bytes(bytes: &[u8]) -> Result<Vec<u8>, String> {
    decode_digit(bytes, &Cancel::new())
}

/// [`digit_from_bytes`], stopped (with [`crate::STOPPED`]) once `cancel` is raised: a PNG
/// between two rows, a JPEG at its next read of the file. The decode holds one byte a pixel of
/// the picture, and framing it one more at most.
pub fn decode_digit(bytes: &[u8], cancel: &Cancel) -> Result<Vec<u8>, String> {
    let grey = decode_grey(bytes, cancel)?;
    prepare_owned(grey.width, grey.height, grey.pixels)
}

/// Image `index` (from 0) of an IDX image file (raw or gzipped), and its label when the
/// matching label file lies beside it (`t10k-labels-idx1-ubyte[.gz]` for
/// `t10k-images-idx3-ubyte[.gz]`).
pub fn idx_digit(path: &Path, index: usize) -> Result<(Vec<u8>, Option<u8>), InferenceError> {
    let images = read_images(path, IMAGE_ROWS, IMAGE_COLS).map_err(data::DataError::from)?;
    if index >= images.count {
        return Err(InferenceError::Image {
            path: path.to_path_buf(),
            message: format!(
                "there is no image {index}: the file holds {} images (indices 0 to {})",
                images.count,
                images.count.saturating_sub(1)
            ),
        });
    }
    let pixels = images.pixels[index * IMAGE_PIXELS..(index + 1) * IMAGE_PIXELS].to_vec();
    let label = labels_beside(path)
        .and_then(|labels| read_labels(&labels, 256).ok())
        .and_then(|labels| labels.get(index).copied());
    Ok((pixels, label))
}

/// `...-labels-idx1-ubyte[.gz]` beside `...-images-idx3-ubyte[.gz]`, if there is one.
fn labels_beside(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    if !name.contains("images-idx3") {
        return None;
    }
    let labels = name.replace("images-idx3", "labels-idx1");
    let dir = images.parent()?;
    [
        labels.clone(),
        format!("{labels}.gz"),
        labels.replace(".gz", ""),
    ]
    .into_iter()
    .map(|candidate| dir.join(candidate))
    .find(|candidate| candidate.is_file())
}
