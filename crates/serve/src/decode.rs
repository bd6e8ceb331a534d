//! Request bodies made into MNIST digits (784 grey levels, light on dark), or a message saying
//! what is wrong with them. Nothing here touches the file system.
//!
//! - `POST /v1/predict`: a PNG or JPEG body (framed as `predict` frames files), or JSON
//!   `{"pixels": [784 grey levels, 0 to 255]}` already framed like MNIST.
//! - `POST /v1/predict/batch`: JSON `{"images": [...]}`, each either `{"pixels": [...]}` or
//!   `{"image": "<base64 PNG or JPEG, data: URL prefix allowed>"}`; parsed first
//!   ([`parse_batch`]), its pictures then decoded one job each ([`picture`]), so that pictures
//!   of other requests are decoded between them and a batch past its deadline stops between two.
//!
//! All of it runs on the decode pool ([`crate::pool`]), never on the async runtime.

use std::fmt;

use base64::Engine;
use inference::{Cancel, decode_digit};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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

/// The digit of a `POST /v1/predict` body; a picture's decode stops once `cancel` is raised.
pub fn single(content_type: Option<&str>, body: &[u8], cancel: &Cancel) -> Result<Vec<u8>, String> {
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
        decode_digit(body, cancel)
    }
}

/// The digit of a batch item's picture (decoded base64); stops once `cancel` is raised.
pub fn picture(bytes: &[u8], cancel: &Cancel) -> Result<Vec<u8>, String> {
    decode_digit(bytes, cancel)
}

/// One item of a batch request: its digit, or the bytes of a picture still to decode.
#[derive(Debug)]
pub enum BatchItem {
    /// JSON pixels, checked: 784 grey levels.
    Digit(Vec<u8>),
    /// A PNG or JPEG, base64 decoded; [`picture`] makes it a digit.
    Picture(Vec<u8>),
}

/// The items of a `POST /v1/predict/batch` body; at most `max_images` of them. An item's error
/// names it (`images[3]: ...`).
pub fn parse_batch(body: &[u8], max_images: usize) -> Result<Vec<BatchItem>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        images: Vec<RawItem>,
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
        .into_iter()
        .enumerate()
        .map(|(index, RawItem(item))| {
            batch_item(item).map_err(|message| format!("images[{index}]: {message}"))
        })
        .collect()
}

/// A batch item as sent: its one field, or what is wrong with its shape.
enum Field {
    Pixels(Vec<Value>),
    Image(String),
}

fn batch_item(item: Result<Field, String>) -> Result<BatchItem, String> {
    match item? {
        Field::Pixels(values) => {
            let values: Option<Vec<f64>> = values.iter().map(Value::as_f64).collect();
            let values = values.ok_or("pixels must all be numbers (0 to 255)")?;
            pixels(&values, "pixels").map(BatchItem::Digit)
        }
        Field::Image(encoded) => decode_base64(&encoded).map(BatchItem::Picture),
    }
}

/// A batch item, parsed without failing the whole body when its shape is wrong, so that the
/// error can name the item; a key given twice is an error, as in `/v1/predict` (a JSON map
/// would keep the last).
struct RawItem(Result<Field, String>);

const ITEM_SHAPE: &str = "expected an object {\"pixels\": [...]} or {\"image\": \"<base64>\"}";

impl<'de> Deserialize<'de> for RawItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ItemVisitor)
    }
}

struct ItemVisitor;

impl ItemVisitor {
    fn wrong_shape<E>(self) -> Result<RawItem, E> {
        Ok(RawItem(Err(ITEM_SHAPE.into())))
    }
}

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = RawItem;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(ITEM_SHAPE)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawItem, A::Error> {
        let mut fields: Vec<(String, Value)> = Vec::new();
        let mut duplicate = None;
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Value>()?;
            if duplicate.is_none() && fields.iter().any(|(seen, _)| *seen == key) {
                duplicate = Some(format!("duplicate field `{key}`: each field once"));
            }
            fields.push((key, value));
        }
        if let Some(message) = duplicate {
            return Ok(RawItem(Err(message)));
        }
        let field = match fields.pop() {
            Some((key, Value::Array(values))) if key == "pixels" && fields.is_empty() => {
                Ok(Field::Pixels(values))
            }
            Some((key, Value::String(encoded))) if key == "image" && fields.is_empty() => {
                Ok(Field::Image(encoded))
            }
            _ => Err(
                "expected exactly one field: \"pixels\" (784 numbers) or \"image\" (a \
                      base64 PNG or JPEG)"
                    .into(),
            ),
        };
        Ok(RawItem(field))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawItem, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.wrong_shape()
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawItem, E> {
        self.wrong_shape()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawItem, E> {
        self.wrong_shape()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawItem, E> {
        self.wrong_shape()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawItem, E> {
        self.wrong_shape()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawItem, E> {
        self.wrong_shape()
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawItem, E> {
        self.wrong_shape()
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
            single(None, short.as_bytes(), &Cancel::new())
                .unwrap_err()
                .contains("783 values")
        );
        let mut values = vec!["0".to_string(); PIXELS];
        values[5] = "300".into();
        let high = format!("{{\"pixels\": [{}]}}", values.join(","));
        assert!(
            single(None, high.as_bytes(), &Cancel::new())
                .unwrap_err()
                .contains("pixels[5] is 300")
        );
        values[5] = "NaN".into();
        let nan = format!("{{\"pixels\": [{}]}}", values.join(","));
        assert!(
            single(None, nan.as_bytes(), &Cancel::new())
                .unwrap_err()
                .contains("NaN")
        );
        values[5] = "12.6".into();
        let ok = format!("{{\"pixels\": [{}]}}", values.join(","));
        assert_eq!(single(None, ok.as_bytes(), &Cancel::new()).unwrap()[5], 13);
    }

    #[test]
    fn bodies_that_are_not_images_say_so() {
        let error = single(Some("image/png"), b"hello", &Cancel::new()).unwrap_err();
        assert!(error.contains("not a PNG or JPEG"), "{error}");
        assert!(
            single(None, b"", &Cancel::new())
                .unwrap_err()
                .contains("empty")
        );
        let error = parse_batch(br#"{"images": [{"image": "!!"}]}"#, 10).unwrap_err();
        assert!(
            error.starts_with("images[0]: image is not valid base64"),
            "{error}"
        );
        let error = parse_batch(br#"{"images": [1]}"#, 10).unwrap_err();
        assert!(
            error.starts_with("images[0]: expected an object"),
            "{error}"
        );
        let error = parse_batch(br#"{"images": [{}, {}]}"#, 1).unwrap_err();
        assert!(error.contains("at most 1"), "{error}");
    }

    #[test]
    fn a_batch_item_with_a_key_twice_is_refused_like_a_single_body() {
        let twice = br#"{"images": [{"image": "AAAA", "image": "AAAA"}]}"#;
        let error = parse_batch(twice, 10).unwrap_err();
        assert!(
            error.starts_with("images[0]: duplicate field `image`"),
            "{error}"
        );
        let mixed = br#"{"images": [{"pixels": [], "image": "AAAA"}]}"#;
        let error = parse_batch(mixed, 10).unwrap_err();
        assert!(
            error.starts_with("images[0]: expected exactly one field"),
            "{error}"
        );
        let single_twice = br#"{"pixels": [1], "pixels": [2]}"#;
        let error = single(None, single_twice, &Cancel::new()).unwrap_err();
        assert!(error.contains("duplicate field `pixels`"), "{error}");
        let items = parse_batch(br#"{"images": [{"image": "AAAA"}, [1, 2]]}"#, 10).unwrap_err();
        assert!(
            items.starts_with("images[1]: expected an object"),
            "{items}"
        );
        match parse_batch(br#"{"images": [{"image": "AAAA"}]}"#, 10)
            .unwrap()
            .as_slice()
        {
            [BatchItem::Picture(bytes)] => assert_eq!(bytes, &[0, 0, 0]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_type_decides_and_sniffing_fills_in() {
        assert!(is_json(Some("application/json; charset=utf-8"), b"x"));
        assert!(!is_json(Some("image/png"), b"{"));
        assert!(is_json(None, b"  {\"pixels\": []}"));
        assert!(!is_json(Some("application/octet-stream"), b"\x89PNG"));
    }
}
