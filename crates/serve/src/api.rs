//! The HTTP API: routes, the body limit (413, from `Content-Length` before any of the body is
//! read), the request timeout (408, decoding included), JSON errors for every status, and the
//! middleware that counts every answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use inference::Prediction;
use serde::Serialize;
use serde_json::{Value, json};

use crate::batching::{InferenceQueue, QueueError};
use crate::decode::BatchItem;
use crate::metrics::Metrics;
use crate::pool::{DecodePool, PoolError};
use crate::{ModelInfo, ServeOptions, decode};

/// The draw-a-digit page: one file, no build step, nothing fetched from elsewhere.
const PAGE: &str = include_str!("page.html");
/// Classes listed in `top`.
const TOP: usize = 3;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    queue: InferenceQueue,
    pool: DecodePool,
    info: Arc<ModelInfo>,
    class_names: Arc<Vec<String>>,
    metrics: Arc<Metrics>,
    timeout: Duration,
    max_batch_request: usize,
    body_limit: usize,
}

impl AppState {
    /// The state of a server answering through `queue`, its bodies decoded on `pool`;
    /// `class_names` names each class by label (the predictor's).
    pub fn new(
        queue: InferenceQueue,
        pool: DecodePool,
        info: ModelInfo,
        class_names: Vec<String>,
        metrics: Arc<Metrics>,
        options: &ServeOptions,
    ) -> Self {
        Self {
            queue,
            pool,
            info: Arc::new(info),
            class_names: Arc::new(class_names),
            metrics,
            timeout: options.request_timeout,
            max_batch_request: options.max_batch_request,
            body_limit: options.body_limit,
        }
    }
}

/// A JSON error answer: `{"error": "...", "status": 400}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message, "status": self.status.as_u16() });
        (self.status, axum::Json(body)).into_response()
    }
}

impl ApiError {
    /// A body that could not be read: over the limit (413, saying the limit) or cut off.
    fn unread_body(rejection: &BytesRejection, limit: usize) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::too_large(limit);
        }
        Self::new(status, rejection.body_text())
    }

    /// 413, saying the limit.
    fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is over the size limit of {limit} bytes ({} MiB)",
                limit >> 20
            ),
        )
    }
}

impl From<PoolError> for ApiError {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::Busy => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is at capacity: too many images are waiting to be decoded; try again \
                 shortly",
            ),
            PoolError::Failed => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "decoding failed"),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::Busy => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is at capacity: too many requests are waiting; try again shortly",
            ),
            QueueError::Failed(message) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, message),
            QueueError::Refused(message) => Self::bad_request(message),
        }
    }
}

/// The routes, with the body limit, the timeout and the metrics around them.
pub fn router(state: AppState) -> Router {
    let body_limit = DefaultBodyLimit::max(state.body_limit);
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/model", get(model))
        .route("/v1/predict", post(predict))
        .route("/v1/predict/batch", post(predict_batch))
        .fallback(not_found)
        .layer(body_limit)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Refuses what needs no handler to refuse (see [`precheck`]), times each request out after
/// the server's timeout (408; dropping the handler stops its decoding), makes bodiless errors
/// JSON, and counts each answer by route and status.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(request.extensions().get::<MatchedPath>());
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = match precheck(&request, state.body_limit) {
        Some(refused) => refused.into_response(),
        None => match tokio::time::timeout(state.timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request took longer than {} ms (a slow upload, or pictures too slow to \
                     decode)",
                    state.timeout.as_millis()
                ),
            )
            .into_response(),
        },
    };
    let response = if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        method_not_allowed(response, &method, &path)
    } else {
        response
    };
    state
        .metrics
        .observe_request(route, response.status().as_u16(), started.elapsed());
    response
}

/// What is refused from the request line and headers alone: an HTTP/1.1 request without
/// `Host` (RFC 9112, section 3.2: 400), and a `Content-Length` over the body limit (413 at once,
/// before any `100 Continue`, rather than after reading 4 MiB).
fn precheck(request: &Request, body_limit: usize) -> Option<ApiError> {
    if request.version() == axum::http::Version::HTTP_11
        && !request.headers().contains_key(header::HOST)
    {
        return Some(ApiError::bad_request(
            "the request has no Host header (HTTP/1.1 requires one)",
        ));
    }
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())?;
    (length > body_limit as u64).then(|| ApiError::too_large(body_limit))
}

/// A 405 with a JSON body like every other error, and the `Allow` header RFC 9110 asks for
/// (axum leaves it out once the router has a fallback).
fn method_not_allowed(response: Response, method: &axum::http::Method, path: &str) -> Response {
    let allowed = match response.headers().get(header::ALLOW) {
        Some(value) if !value.is_empty() => value.clone(),
        _ if path.starts_with("/v1/predict") => HeaderValue::from_static("POST"),
        _ => HeaderValue::from_static("GET,HEAD"),
    };
    let mut answer = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {path}: use {}",
            allowed.to_str().unwrap_or("another method")
        ),
    )
    .into_response();
    answer.headers_mut().insert(header::ALLOW, allowed);
    answer
}

/// The route pattern as a label with a bounded set of values.
fn route_label(path: Option<&MatchedPath>) -> &'static str {
    match path.map(MatchedPath::as_str) {
        Some("/") => "/",
        Some("/healthz") => "/healthz",
        Some("/metrics") => "/metrics",
        Some("/v1/model") => "/v1/model",
        Some("/v1/predict") => "/v1/predict",
        Some("/v1/predict/batch") => "/v1/predict/batch",
        _ => "other",
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn health() -> &'static str {
    "ok\n"
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn model(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(state.info.document().clone())
}

async fn not_found(request: Request<Body>) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {} {} (see GET / for the page; the API is POST /v1/predict, POST \
             /v1/predict/batch, GET /v1/model, GET /healthz, GET /metrics)",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn predict(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<PredictionBody>, ApiError> {
    let steps = steps_asked(query.as_deref())?;
    let body = body.map_err(|rejection| ApiError::unread_body(&rejection, state.body_limit))?;
    let announced = state.queue.arriving();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    // The decode thread queues the digit itself: the task is woken once, by the answer.
    let (reply, answer) = tokio::sync::oneshot::channel();
    let queue = state.queue.clone();
    let _decoding = state.pool.spawn(move |cancel| {
        match decode::single(content_type.as_deref(), &body, cancel) {
            Ok(digit) => queue.send(vec![digit], reply, steps),
            Err(message) => {
                let _ = reply.send(Err(QueueError::Refused(message)));
            }
        }
        drop(announced);
    })?;
    let predictions = InferenceQueue::answer(answer).await?;
    let prediction = predictions.first().ok_or_else(|| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no prediction came back")
    })?;
    Ok(axum::Json(PredictionBody::new(
        prediction,
        &state.class_names,
    )))
}

/// `/v1/predict`'s query: `steps=true` (or `1`) asks for the probabilities after every step;
/// anything else is refused, naming what is allowed.
fn steps_asked(query: Option<&str>) -> Result<bool, ApiError> {
    let mut steps = false;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        steps = match pair.split_once('=').unwrap_or((pair, "true")) {
            ("steps", "true" | "1") => true,
            ("steps", "false" | "0") => false,
            ("steps", value) => {
                return Err(ApiError::bad_request(format!(
                    "query: steps={value}: expected steps=true or steps=false"
                )));
            }
            (name, _) => {
                return Err(ApiError::bad_request(format!(
                    "query: unknown parameter {name:?}; /v1/predict takes steps=true|false"
                )));
            }
        };
    }
    Ok(steps)
}

async fn predict_batch(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<BatchBody>, ApiError> {
    let body = body.map_err(|rejection| ApiError::unread_body(&rejection, state.body_limit))?;
    let announced = state.queue.arriving();
    let max = state.max_batch_request;
    let items = state
        .pool
        .run(move |_| decode::parse_batch(&body, max))
        .await?
        .map_err(ApiError::bad_request)?;
    let mut digits = Vec::with_capacity(items.len());
    // One job a picture: other requests' pictures are decoded in between, and when the deadline
    // drops this future the pictures not yet started never are.
    for (index, item) in items.into_iter().enumerate() {
        let digit = match item {
            BatchItem::Digit(digit) => digit,
            BatchItem::Picture(bytes) => state
                .pool
                .run(move |cancel| decode::picture(&bytes, cancel))
                .await?
                .map_err(|message| ApiError::bad_request(format!("images[{index}]: {message}")))?,
        };
        digits.push(digit);
    }
    let predictions = state.queue.predict(digits, announced).await?;
    let predictions = predictions
        .iter()
        .map(|prediction| PredictionBody::new(prediction, &state.class_names))
        .collect();
    Ok(axum::Json(BatchBody { predictions }))
}

/// One prediction as the API gives it: `{"class": 7, "label": "7", "probabilities": [...],
/// "top": [{"class", "label", "probability"}, ...]}` (serialised as declared, without building a
/// JSON tree first).
#[derive(Serialize)]
struct PredictionBody {
    class: usize,
    label: String,
    probabilities: Vec<f32>,
    top: Vec<TopClass>,
    /// With `?steps=true`: the probabilities after each time step.
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<Vec<Vec<f32>>>,
}

/// One of a prediction's most likely classes.
#[derive(Serialize)]
struct TopClass {
    class: usize,
    label: String,
    probability: f32,
}

/// The answer of `/v1/predict/batch`: `{"predictions": [...]}`, in the order of the images.
#[derive(Serialize)]
struct BatchBody {
    predictions: Vec<PredictionBody>,
}

impl PredictionBody {
    fn new(prediction: &Prediction, class_names: &[String]) -> Self {
        let label = |class: usize| {
            class_names
                .get(class)
                .cloned()
                .unwrap_or_else(|| class.to_string())
        };
        let top = prediction
            .top(TOP)
            .into_iter()
            .map(|(class, probability)| TopClass {
                class,
                label: label(class),
                probability,
            })
            .collect();
        let class = prediction.class();
        Self {
            class,
            label: label(class),
            probabilities: prediction.probabilities.clone(),
            top,
            steps: prediction.steps.clone(),
        }
    }
}
