//! Request bodies made into MNIST digits (784 grey levels, light on dark), or a message saying
//! what is wrong with them. Nothing here touches the file system.
//!
//! - `POST /v1/predict`: a PNG or JPEG body (framed as `predict` frames files), or JSON
//!   `{"pixels": [784 grey levels, 0 to 255]}` already framed like MNIST.
//! - `POST /v1/predict/batch`: JSON `{"images": [...]}`, each either `{"pixels": [...]}` or
//!   `{"image": "<base64 PNG or JPEG, data: URL prefix allowed>"}`.

use base64::Engine;
use inference::digit_from_bytes;
use serde::Deserialize;
use serde_json::Value;

/// Grey levels in one MNIST digit.
pub const PIXELS: usize = 28 * 28;

/// What the body of a single prediction is, from its `Content-Type` or, when that says
/// nothing useful, from its first byte.
fn is_json(content_type: Option<&str>, body: &[u8]) -> bool {
    let essence = content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => true,
        Some(kind) if kind.starts_with("image/") => false,
        _ => body
            .iter()
            .find(|byte| !byte.is_ascii_whitespace())
            .is_some_and(|&byte| byte == b'{'),
    }
}

/// The digit of a `POST /v1/predict` body.
pub fn single(content_type: Option<&str>, body: &[u8]) -> Result<Vec<u8>, String> {
    if body.is_empty() {
        return Err(
            "the request body is empty: send a PNG or JPEG image, or JSON \
                    {\"pixels\": [784 grey levels]}"
                .into(),
        );
    }
    if is_json(content_type, body) {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Pixels {
            pixels: Vec<f64>,
        }
        let parsed: Pixels =
            serde_json::from_slice(body).map_err(|error| json_error(&error, body))?;
        pixels(&parsed.pixels, "pixels")
    } else {
        digit_from_bytes(body)
    }
}

/// The digits of a `POST /v1/predict/batch` body; at most `max_images` of them.
pub fn batch(body: &[u8], max_images: usize) -> Result<Vec<Vec<u8>>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        images: Vec<Value>,
    }
    let parsed: Batch = serde_json::from_slice(body).map_err(|error| json_error(&error, body))?;
    if parsed.images.is_empty() {
        return Err("images is empty: send at least one image".into());
    }
    if parsed.images.len() > max_images {
        return Err(format!(
            "{} images in one request: at most {max_images}",
            parsed.images.len()
        ));
    }
    parsed
        .images
        .iter()
        .enumerate()
        .map(|(index, image)| {
            batch_item(image).map_err(|message| format!("images[{index}]: {message}"))
        })
        .collect()
}

fn batch_item(image: &Value) -> Result<Vec<u8>, String> {
    let Value::Object(fields) = image else {
        return Err("expected an object {\"pixels\": [...]} or {\"image\": \"<base64>\"}".into());
    };
    match (fields.get("pixels"), fields.get("image"), fields.len()) {
        (Some(Value::Array(values)), None, 1) => {
            let values: Option<Vec<f64>> = values.iter().map(Value::as_f64).collect();
            let values = values.ok_or("pixels must all be numbers (0 to 255)")?;
            pixels(&values, "pixels")
        }
        (None, Some(Value::String(encoded)), 1) => {
            let bytes = decode_base64(encoded)?;
            digit_from_bytes(&bytes)
        }
        _ => Err(
            "expected exactly one field: \"pixels\" (784 numbers) or \"image\" (a base64 PNG or \
             JPEG)"
                .into(),
        ),
    }
}

/// Base64 (standard alphabet, padding optional), after an optional `data:...;base64,` prefix.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let payload = match text.split_once(";base64,") {
        Some((prefix, payload)) if prefix.starts_with("data:") => payload,
        _ => text,
    };
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(payload.trim().trim_end_matches('='))
        .map_err(|error| format!("image is not valid base64: {error}"))
}

/// 784 grey levels from JSON numbers, each finite and within 0 to 255 (rounded).
fn pixels(values: &[f64], field: &str) -> Result<Vec<u8>, String> {
    if values.len() != PIXELS {
        return Err(format!(
            "{field} has {} values: {PIXELS} (28x28, row by row) expected",
            values.len()
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(index, &value)| {
            if value.is_finite() && (0.0..=255.0).contains(&value) {
                Ok(value.round() as u8)
            } else {
                Err(format!(
                    "{field}[{index}] is {value}: grey levels are 0 to 255"
                ))
            }
        })
        .collect()
}

/// serde_json's message, made plainer where JSON itself cannot say what the client meant.
fn json_error(error: &serde_json::Error, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.contains("NaN") || text.contains("Infinity") {
        return format!(
            "not valid JSON ({error}): NaN and Infinity are not JSON numbers; grey levels are 0 \
             to 255"
        );
    }
    format!("not valid JSON: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_counts_ranges_and_nan_are_named() {
        let short = format!("{{\"pixels\": [{}]}}", vec!["0"; 783].join(","));
        assert!(
            single(None, short.as_bytes())
                .unwrap_err()
                .contains("783 values")
        );
        let mut values = vec!["0".to_string(); PIXELS];
        values[5] = "300".into();
        let high = format!("{{\"pixels\": [{}]}}", values.join(","));
        assert!(
            single(None, high.as_bytes())
                .unwrap_err()
                .contains("pixels[5] is 300")
        );
        values[5] = "NaN".into();
        let nan = format!("{{\"pixels\": [{}]}}", values.join(","));
        assert!(single(None, nan.as_bytes()).unwrap_err().contains("NaN"));
        values[5] = "12.6".into();
        let ok = format!("{{\"pixels\": [{}]}}", values.join(","));
        assert_eq!(single(None, ok.as_bytes()).unwrap()[5], 13);
    }

    #[test]
    fn bodies_that_are_not_images_say_so() {
        let error = single(Some("image/png"), b"hello").unwrap_err();
        assert!(error.contains("not a PNG or JPEG"), "{error}");
        assert!(single(None, b"").unwrap_err().contains("empty"));
        let error = batch(br#"{"images": [{"image": "!!"}]}"#, 10).unwrap_err();
        assert!(
            error.starts_with("images[0]: image is not valid base64"),
            "{error}"
        );
        let error = batch(br#"{"images": [1]}"#, 10).unwrap_err();
        assert!(
            error.starts_with("images[0]: expected an object"),
            "{error}"
        );
        let error = batch(br#"{"images": [{}, {}]}"#, 1).unwrap_err();
        assert!(error.contains("at most 1"), "{error}");
    }

    #[test]
    fn content_type_decides_and_sniffing_fills_in() {
        assert!(is_json(Some("application/json; charset=utf-8"), b"x"));
        assert!(!is_json(Some("image/png"), b"{"));
        assert!(is_json(None, b"  {\"pixels\": []}"));
        assert!(!is_json(Some("application/octet-stream"), b"\x89PNG"));
    }
}
