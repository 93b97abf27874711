//! The JSON payloads of docs/MQTT.md: what the daemon publishes (status,
//! answers, objects, replies) and the remote prompts it reads. Every one
//! carries `schema`, bumped on any change a reader could trip on.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::everything::{CocoRle, SamRecord};
use crate::model::{shape, BoxPrompt, Candidate, Point, PointLabel, Prompt};
use crate::pipeline::{Answer, FrameSelector, Objects, Rejection};

/// The version of every payload below.
pub const SCHEMA: u32 = 1;

/// Most points a remote prompt may hold.
pub const MAX_POINTS: usize = 16;

/// Longest request id kept for duplicates.
const MAX_ID: usize = 128;

/// A mask as SAM's records describe one (`maskd everything --json`), with
/// the geometry a controller uses to grasp it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaskRecord {
    /// COCO RLE, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<CocoRle>,
    pub area: u64,
    /// `[x0, y0, x1 - x0, y1 - y0]` with `x1`, `y1` the last pixel, as SAM writes it; null when empty.
    pub bbox: Option<[u32; 4]>,
    pub predicted_iou: f32,
    pub stability_score: f32,
    pub centroid: Option<[f32; 2]>,
    /// Principal axis, radians, from the x axis towards y.
    pub angle: Option<f32>,
    /// The pixel deepest inside the mask near its centroid, and its distance to the edge.
    pub grasp: Option<[u32; 2]>,
    pub clearance: Option<f32>,
}

impl MaskRecord {
    pub fn new(candidate: &Candidate, with_rle: bool) -> MaskRecord {
        let mask = &candidate.mask;
        let segmentation = with_rle.then(|| {
            let rle = mask.to_rle();
            CocoRle { size: rle.size, counts: rle.to_coco_string() }
        });
        let shape = shape(mask);
        MaskRecord {
            segmentation,
            area: mask.area(),
            bbox: shape.map(|s| [s.bbox.x0, s.bbox.y0, s.bbox.x1 - s.bbox.x0, s.bbox.y1 - s.bbox.y0]),
            predicted_iou: candidate.predicted_iou,
            stability_score: candidate.stability,
            centroid: shape.map(|s| [s.centroid.0, s.centroid.1]),
            angle: shape.map(|s| s.angle),
            grasp: shape.map(|s| [s.grasp.0, s.grasp.1]),
            clearance: shape.map(|s| s.clearance),
        }
    }
}

/// A prompt as answers echo it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptRecord {
    /// `[x, y, label]`, label 1 object, 0 background.
    pub points: Vec<[f32; 3]>,
    #[serde(rename = "box")]
    pub bbox: Option<[f32; 4]>,
}

impl PromptRecord {
    pub fn new(prompt: &Prompt) -> PromptRecord {
        let label = |p: &Point| match p.label {
            PointLabel::Foreground => 1.0,
            PointLabel::Background => 0.0,
        };
        PromptRecord {
            points: prompt.points.iter().map(|p| [p.x, p.y, label(p)]).collect(),
            bbox: prompt.bbox.map(|b| [b.x0, b.y0, b.x1, b.y1]),
        }
    }
}

/// One answered prompt: the `answers` topic, and the body of an `ok` reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerRecord {
    pub frame_id: u32,
    /// Age of the frame when the decoder started on the prompt.
    pub frame_age_ms: u64,
    pub decode_ms: f64,
    pub prompt: PromptRecord,
    pub mask: MaskRecord,
}

impl AnswerRecord {
    pub fn new(answer: &Answer, with_rle: bool) -> AnswerRecord {
        AnswerRecord {
            frame_id: answer.frame.id,
            frame_age_ms: answer.frame_age.as_millis() as u64,
            decode_ms: rounded(answer.decode.as_secs_f64() * 1e3, 1),
            prompt: PromptRecord::new(&answer.prompt),
            mask: MaskRecord::new(&answer.mask, with_rle),
        }
    }
}

/// The `answers` topic's payload.
#[derive(Debug, Serialize)]
pub struct AnswerPayload<'a> {
    pub schema: u32,
    #[serde(flatten)]
    pub answer: &'a AnswerRecord,
}

/// The `objects` topic's payload: SAM's records for one frame.
#[derive(Debug, Serialize)]
pub struct ObjectsPayload {
    pub schema: u32,
    pub frame_id: u32,
    pub frame_age_ms: u64,
    /// Start to finish, prompts answered in between included.
    pub elapsed_ms: u64,
    /// Grid prompts decoded.
    pub prompts: usize,
    /// By descending predicted IoU, as `maskd everything --json` writes them.
    pub objects: Vec<SamRecord>,
}

impl ObjectsPayload {
    pub fn new(objects: &Objects) -> ObjectsPayload {
        ObjectsPayload {
            schema: SCHEMA,
            frame_id: objects.frame.id,
            frame_age_ms: objects.frame_age.as_millis() as u64,
            elapsed_ms: objects.elapsed.as_millis() as u64,
            prompts: objects.prompts,
            objects: objects.masks.iter().map(SamRecord::from).collect(),
        }
    }
}

/// Why a remote prompt got no mask, as replies name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a prompt: the message says what is wrong.
    Malformed,
    /// A prompt, but not one the frame can take (a point outside it...).
    InvalidPrompt,
    /// The prompt queue is full, or the daemon is stopping: try again.
    Busy,
    /// No embedded frame yet, or not the one asked for.
    NoFrame,
    Internal,
}

/// A reply's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Ok(AnswerRecord),
    Error { error: ReplyError },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplyError {
    pub code: ErrorCode,
    pub message: String,
}

impl Outcome {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Outcome {
        Outcome::Error { error: ReplyError { code, message: message.into() } }
    }

    pub fn rejected(rejection: &Rejection) -> Outcome {
        let code = match rejection {
            Rejection::Busy | Rejection::Stopping => ErrorCode::Busy,
            Rejection::InvalidPrompt(_) => ErrorCode::InvalidPrompt,
            Rejection::NoFrame(_) => ErrorCode::NoFrame,
            Rejection::Internal(_) => ErrorCode::Internal,
        };
        Outcome::error(code, rejection.to_string())
    }
}

/// The reply to one remote prompt.
#[derive(Debug, Serialize)]
pub struct ReplyPayload<'a> {
    pub schema: u32,
    /// The request's `id`, when it had one.
    pub id: Option<&'a str>,
    #[serde(flatten)]
    pub outcome: &'a Outcome,
}

/// A remote prompt, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptRequest {
    pub id: Option<String>,
    pub prompt: Prompt,
    pub frame: FrameSelector,
    /// The reply carries the mask as COCO RLE.
    pub with_rle: bool,
}

/// A payload that is not a prompt: what is wrong, and the request's id
/// when one could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    pub id: Option<String>,
    pub message: String,
}

const FIELDS: &str = "schema, id, points, box, frame, mask";

impl PromptRequest {
    /// Reads a prompt payload (docs/MQTT.md): `{"id": "a1", "points": [[x, y], [x, y, 0]],
    /// "box": [x0, y0, x1, y1], "frame": "latest" | ID, "mask": "rle" | "none"}`.
    ///
    /// # Errors
    /// [`Malformed`] naming the field and what it should be.
    pub fn parse(payload: &[u8]) -> Result<PromptRequest, Malformed> {
        let value: Value = serde_json::from_slice(payload)
            .map_err(|e| Malformed { id: None, message: format!("the payload is not JSON: {e}") })?;
        let Value::Object(fields) = value else {
            return Err(Malformed { id: None, message: format!("the payload must be a JSON object with {FIELDS}") });
        };
        let id = request_id(&fields).map_err(|message| Malformed { id: None, message })?;
        read(&fields, id.clone()).map_err(|message| Malformed { id, message })
    }
}

fn request_id(fields: &Map<String, Value>) -> Result<Option<String>, String> {
    let id = match fields.get("id") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(other) => return Err(format!("id must be a string or a whole number, got {other}")),
    };
    if id.is_empty() || id.len() > MAX_ID {
        return Err(format!("id must be 1-{MAX_ID} characters, got {}", id.len()));
    }
    Ok(Some(id))
}

fn read(fields: &Map<String, Value>, id: Option<String>) -> Result<PromptRequest, String> {
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.split(", ").any(|f| f == k.as_str())) {
        return Err(format!("unknown field {unknown:?}; a prompt has {FIELDS}"));
    }
    match fields.get("schema") {
        None => {}
        Some(v) if v.as_u64() == Some(u64::from(SCHEMA)) => {}
        Some(v) => return Err(format!("schema {v} is not supported; this daemon reads schema {SCHEMA}")),
    }
    let points = match fields.get("points") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(points)) => points.iter().enumerate().map(|(i, p)| point(i, p)).collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("points must be a list of [x, y] or [x, y, label], got {other}")),
    };
    if points.len() > MAX_POINTS {
        return Err(format!("{} points, at most {MAX_POINTS} allowed", points.len()));
    }
    let bbox = match fields.get("box") {
        None | Some(Value::Null) => None,
        Some(value) => Some(box_prompt(value)?),
    };
    if points.is_empty() && bbox.is_none() {
        return Err("the prompt has neither points nor a box".into());
    }
    let frame = match fields.get("frame") {
        None | Some(Value::Null) => FrameSelector::Latest,
        Some(Value::String(s)) if s == "latest" => FrameSelector::Latest,
        Some(v) => match v.as_u64().and_then(|id| u32::try_from(id).ok()) {
            Some(id) => FrameSelector::Id(id),
            None => return Err(format!("frame must be \"latest\" or a frame id from an answer, got {v}")),
        },
    };
    let with_rle = match fields.get("mask").map(|v| v.as_str()) {
        None | Some(Some("rle")) => true,
        Some(Some("none")) => false,
        Some(_) => return Err(format!("mask must be \"rle\" or \"none\", got {}", fields["mask"])),
    };
    Ok(PromptRequest { id, prompt: Prompt { points, bbox, mask_input: None }, frame, with_rle })
}

fn point(index: usize, value: &Value) -> Result<Point, String> {
    let bad = || format!("points[{index}] must be [x, y] or [x, y, label] with label 1 (object) or 0 (background), got {value}");
    let numbers = numbers(value).ok_or_else(bad)?;
    match numbers[..] {
        [x, y] | [x, y, 1.0] => Ok(Point::foreground(x, y)),
        [x, y, 0.0] => Ok(Point::background(x, y)),
        _ => Err(bad()),
    }
}

fn box_prompt(value: &Value) -> Result<BoxPrompt, String> {
    let bad = || format!("box must be [x0, y0, x1, y1], got {value}");
    match numbers(value).ok_or_else(bad)?[..] {
        [x0, y0, x1, y1] => Ok(BoxPrompt { x0, y0, x1, y1 }),
        _ => Err(bad()),
    }
}

/// A JSON list of finite numbers.
fn numbers(value: &Value) -> Option<Vec<f32>> {
    value.as_array()?.iter().map(|n| n.as_f64().map(|v| v as f32).filter(|v| v.is_finite())).collect()
}

/// `value` rounded to `decimals` places, for readable JSON.
pub fn rounded(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PromptRequest, Malformed> {
        PromptRequest::parse(text.as_bytes())
    }

    #[test]
    fn a_prompt_reads_points_a_box_a_frame_and_what_to_return() {
        let request =
            parse(r#"{"schema":1,"id":"a1","points":[[255,180],[10.5,20,0]],"box":[1,2,300,200],"frame":12,"mask":"none"}"#)
                .unwrap();
        assert_eq!(request.id.as_deref(), Some("a1"));
        assert_eq!(request.prompt.points, [Point::foreground(255.0, 180.0), Point::background(10.5, 20.0)]);
        assert_eq!(request.prompt.bbox, Some(BoxPrompt { x0: 1.0, y0: 2.0, x1: 300.0, y1: 200.0 }));
        assert_eq!((request.frame, request.with_rle), (FrameSelector::Id(12), false));
        let minimal = parse(r#"{"points":[[1,2]]}"#).unwrap();
        assert_eq!((minimal.id, minimal.frame, minimal.with_rle), (None, FrameSelector::Latest, true));
        assert_eq!(parse(r#"{"id":7,"box":[1,2,3,4],"frame":"latest"}"#).unwrap().id.as_deref(), Some("7"));
    }

    #[test]
    fn malformed_prompts_name_what_is_wrong_and_keep_the_id() {
        for (text, expected, id) in [
            ("segment 255,180", "not JSON", None),
            ("[1,2]", "JSON object", None),
            (r#"{"id":"x","pints":[[1,2]]}"#, "unknown field \"pints\"", Some("x")),
            (r#"{"id":"x","points":[[1]]}"#, "points[0]", Some("x")),
            (r#"{"id":"x","points":[[1,2,5]]}"#, "label 1 (object) or 0", Some("x")),
            (r#"{"id":"x","points":"1,2"}"#, "points must be a list", Some("x")),
            (r#"{"id":"x","box":[1,2,3]}"#, "box must be", Some("x")),
            (r#"{"id":"x"}"#, "neither points nor a box", Some("x")),
            (r#"{"id":"x","points":[[1,2]],"frame":-1}"#, "frame must be", Some("x")),
            (r#"{"id":"x","points":[[1,2]],"mask":"png"}"#, "mask must be", Some("x")),
            (r#"{"id":"x","points":[[1,2]],"schema":2}"#, "schema 2", Some("x")),
            (r#"{"id":[1],"points":[[1,2]]}"#, "id must be", None),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.message.contains(expected), "{text}: {}", err.message);
            assert_eq!(err.id.as_deref(), id, "{text}");
        }
        let many = format!(r#"{{"points":[{}]}}"#, vec!["[1,2]"; MAX_POINTS + 1].join(","));
        assert!(parse(&many).unwrap_err().message.contains("at most 16"));
    }

    #[test]
    fn replies_carry_the_schema_the_id_and_the_status() {
        let outcome = Outcome::rejected(&Rejection::Busy);
        let text = serde_json::to_string(&ReplyPayload { schema: SCHEMA, id: Some("a1"), outcome: &outcome }).unwrap();
        assert_eq!(
            text,
            r#"{"schema":1,"id":"a1","status":"error","error":{"code":"busy","message":"the prompt queue is full"}}"#
        );
    }

    #[test]
    fn a_mask_record_has_sam_s_bbox_and_the_rle_when_asked() {
        use crate::model::{LowResMask, Mask, Rle};
        let mask = Mask::from_fn(40, 30, |x, y| (5..=20).contains(&x) && (3..=9).contains(&y));
        let candidate = Candidate {
            token: 0,
            mask: mask.clone(),
            predicted_iou: 0.9,
            stability: 0.8,
            low_res: LowResMask(ndarray::Array2::zeros((1, 1))),
        };
        let record = MaskRecord::new(&candidate, true);
        assert_eq!((record.bbox, record.area), (Some([5, 3, 15, 6]), 112));
        let rle = record.segmentation.as_ref().unwrap();
        assert_eq!(Rle::from_coco_string(rle.size, &rle.counts).unwrap().to_mask().unwrap(), mask);
        assert!(record.grasp.is_some() && record.angle.is_some());
        assert_eq!(MaskRecord::new(&candidate, false).segmentation, None);
        let empty = Candidate { mask: Mask::from_fn(4, 4, |_, _| false), ..candidate };
        let record = MaskRecord::new(&empty, false);
        assert_eq!((record.bbox, record.centroid, record.grasp), (None, None, None));
    }
}
