//! The messages of the serial protocol and their postcard bodies (docs/PROTOCOL.md, sections 2-3).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::codec::CRC32;

/// The protocol version carried in every frame header.
pub const PROTOCOL_VERSION: u8 = 1;

/// The canonical schema of docs/PROTOCOL.md, section 2.1, byte for byte.
pub const SCHEMA: &str = concat!(
    "maskd 1\n",
    "Hello=0x01{client:str}\n",
    "Capabilities=0x02{protocol:u8,schema_hash:u32,max_frame:u16,image_width:u16,image_height:u16,model:str,max_points:u8,queue_capacity:u8,heartbeat_ms:u32}\n",
    "SegmentRequest=0x10{points:seq<Point>,box:option<Box>,frame:FrameSelector,output:Output}\n",
    "SegmentResult=0x11{status:ResultStatus,frame_id:u32,frame_age_ms:u32,decode_ms:u32,predicted_iou:f32,stability_score:f32,area:u32,bbox:Box,centroid:PointF,angle:f32,grasp:Pixel,clearance:f32,mask:option<MaskHeader>}\n",
    "MaskChunk=0x12{index:u16,count:u16,runs:seq<u32>}\n",
    "GetStatus=0x20{}\n",
    "Status=0x21{uptime_ms:u32,fps:f32,encoder_ms:f32,camera:CameraState,queue_depth:u8,frames_superseded:u32,capture_errors:u32,busy_rejections:u32,link_drops:LinkDrops,unsent:Unsent,encoder:EncoderState}\n",
    "EverythingRequest=0x30{frame:FrameSelector,points_per_side:u8,max_objects:u16,output:Output}\n",
    "Objects=0x31{frame_id:u32,frame_age_ms:u32,elapsed_ms:u32,prompts:u16,found:u16,objects:u16}\n",
    "Error=0x7f{code:ErrorCode,message:str}\n",
    "Point{x:u16,y:u16,label:Label}\n",
    "Label[Background,Foreground]\n",
    "Box{x0:u16,y0:u16,x1:u16,y1:u16}\n",
    "Pixel{x:u16,y:u16}\n",
    "PointF{x:f32,y:f32}\n",
    "FrameSelector[Latest,Id(u32)]\n",
    "Output{mask:MaskEncoding,downscale:u8}\n",
    "MaskEncoding[None,Rle]\n",
    "ResultStatus[Ok,Empty]\n",
    "MaskHeader{x0:u16,y0:u16,downscale:u8,width:u16,height:u16,runs:u32,chunks:u16}\n",
    "CameraState[Starting,Streaming,Stalled,Disconnected]\n",
    "EncoderState[Local,Remote,Fallback,Down]\n",
    "LinkDrops{cobs:u32,truncated:u32,crc:u32,unknown_version:u32,unknown_kind:u32,oversize:u32,body:u32}\n",
    "Unsent{answers:u32,heartbeats:u32}\n",
    "ErrorCode[BadCrc,UnknownVersion,UnknownKind,Oversize,MalformedBody,Busy,InvalidPrompt,NoFrame,Internal]",
);

/// CRC-32 of [`SCHEMA`]: lets each side detect a peer built from another schema.
pub const SCHEMA_HASH: u32 = CRC32.checksum(SCHEMA.as_bytes());

/// The `kind` byte of the frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Hello = 0x01,
    Capabilities = 0x02,
    SegmentRequest = 0x10,
    SegmentResult = 0x11,
    MaskChunk = 0x12,
    GetStatus = 0x20,
    Status = 0x21,
    EverythingRequest = 0x30,
    Objects = 0x31,
    Error = 0x7f,
}

impl Kind {
    /// Whether a client sends this kind (and the daemon receives it).
    pub fn is_request(self) -> bool {
        matches!(self, Kind::Hello | Kind::SegmentRequest | Kind::GetStatus | Kind::EverythingRequest)
    }
}

impl TryFrom<u8> for Kind {
    /// The unknown kind byte.
    type Error = u8;

    fn try_from(byte: u8) -> Result<Kind, u8> {
        Ok(match byte {
            0x01 => Kind::Hello,
            0x02 => Kind::Capabilities,
            0x10 => Kind::SegmentRequest,
            0x11 => Kind::SegmentResult,
            0x12 => Kind::MaskChunk,
            0x20 => Kind::GetStatus,
            0x21 => Kind::Status,
            0x30 => Kind::EverythingRequest,
            0x31 => Kind::Objects,
            0x7f => Kind::Error,
            other => return Err(other),
        })
    }
}

/// One message: the body of one frame, its kind implied by the variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Hello(Hello),
    Capabilities(Capabilities),
    SegmentRequest(SegmentRequest),
    SegmentResult(SegmentResult),
    MaskChunk(MaskChunk),
    GetStatus,
    Status(Status),
    EverythingRequest(EverythingRequest),
    Objects(Objects),
    Error(ErrorReply),
}

/// Why a body did not decode as its kind's message.
#[derive(Debug, Error)]
pub enum BodyError {
    #[error("postcard: {0}")]
    Postcard(#[from] postcard::Error),
    #[error("{0} bytes left after the message")]
    TrailingBytes(usize),
}

impl Message {
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello(_) => Kind::Hello,
            Message::Capabilities(_) => Kind::Capabilities,
            Message::SegmentRequest(_) => Kind::SegmentRequest,
            Message::SegmentResult(_) => Kind::SegmentResult,
            Message::MaskChunk(_) => Kind::MaskChunk,
            Message::GetStatus => Kind::GetStatus,
            Message::Status(_) => Kind::Status,
            Message::EverythingRequest(_) => Kind::EverythingRequest,
            Message::Objects(_) => Kind::Objects,
            Message::Error(_) => Kind::Error,
        }
    }

    /// The postcard body (empty for `GetStatus`).
    pub(crate) fn to_body(&self) -> Result<Vec<u8>, BodyError> {
        let body = match self {
            Message::Hello(m) => postcard::to_stdvec(m),
            Message::Capabilities(m) => postcard::to_stdvec(m),
            Message::SegmentRequest(m) => postcard::to_stdvec(m),
            Message::SegmentResult(m) => postcard::to_stdvec(m),
            Message::MaskChunk(m) => postcard::to_stdvec(m),
            Message::GetStatus => Ok(Vec::new()),
            Message::Status(m) => postcard::to_stdvec(m),
            Message::EverythingRequest(m) => postcard::to_stdvec(m),
            Message::Objects(m) => postcard::to_stdvec(m),
            Message::Error(m) => postcard::to_stdvec(m),
        };
        Ok(body?)
    }

    /// Decodes a body of `kind`, rejecting bytes left over after the message.
    pub(crate) fn from_body(kind: Kind, body: &[u8]) -> Result<Message, BodyError> {
        Ok(match kind {
            Kind::Hello => Message::Hello(strict(body)?),
            Kind::Capabilities => Message::Capabilities(strict(body)?),
            Kind::SegmentRequest => Message::SegmentRequest(strict(body)?),
            Kind::SegmentResult => Message::SegmentResult(strict(body)?),
            Kind::MaskChunk => Message::MaskChunk(strict(body)?),
            Kind::GetStatus => {
                if !body.is_empty() {
                    return Err(BodyError::TrailingBytes(body.len()));
                }
                Message::GetStatus
            }
            Kind::Status => Message::Status(strict(body)?),
            Kind::EverythingRequest => Message::EverythingRequest(strict(body)?),
            Kind::Objects => Message::Objects(strict(body)?),
            Kind::Error => Message::Error(strict(body)?),
        })
    }
}

fn strict<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, BodyError> {
    let (value, rest) = postcard::take_from_bytes(body)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(BodyError::TrailingBytes(rest.len()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub client: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub protocol: u8,
    pub schema_hash: u32,
    pub max_frame: u16,
    pub image_width: u16,
    pub image_height: u16,
    pub model: String,
    pub max_points: u8,
    pub queue_capacity: u8,
    pub heartbeat_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Label {
    Background,
    Foreground,
}

/// A click in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    pub x: u16,
    pub y: u16,
    pub label: Label,
}

/// A pixel rectangle (the schema's `Box`): corners in a request, inclusive bounds in a result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    pub x0: u16,
    pub y0: u16,
    pub x1: u16,
    pub y1: u16,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pixel {
    pub x: u16,
    pub y: u16,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PointF {
    pub x: f32,
    pub y: f32,
}

/// Which camera frame a request segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrameSelector {
    Latest,
    Id(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaskEncoding {
    None,
    Rle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub mask: MaskEncoding,
    /// Integer downscale of the mask grid, 1-64.
    pub downscale: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRequest {
    pub points: Vec<Point>,
    pub box_prompt: Option<Rect>,
    pub frame: FrameSelector,
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResultStatus {
    Ok,
    /// The model found no pixel: geometry is zero and no mask follows.
    Empty,
}

/// Describes the run-length-encoded mask carried by the MaskChunks after a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskHeader {
    pub x0: u16,
    pub y0: u16,
    pub downscale: u8,
    pub width: u16,
    pub height: u16,
    pub runs: u32,
    pub chunks: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentResult {
    pub status: ResultStatus,
    pub frame_id: u32,
    pub frame_age_ms: u32,
    pub decode_ms: u32,
    pub predicted_iou: f32,
    pub stability_score: f32,
    pub area: u32,
    /// Inclusive bounds of the set pixels.
    pub bbox: Rect,
    pub centroid: PointF,
    /// Principal axis, radians in (-pi/2, pi/2], from +x toward +y.
    pub angle: f32,
    pub grasp: Pixel,
    /// Distance in pixels from `grasp` to the nearest unset pixel.
    pub clearance: f32,
    pub mask: Option<MaskHeader>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskChunk {
    pub index: u16,
    pub count: u16,
    pub runs: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CameraState {
    Starting,
    Streaming,
    Stalled,
    Disconnected,
}

/// Received frames dropped, by reason (docs/PROTOCOL.md, section 5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDrops {
    pub cobs: u32,
    pub truncated: u32,
    pub crc: u32,
    pub unknown_version: u32,
    pub unknown_kind: u32,
    pub oversize: u32,
    pub body: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub uptime_ms: u32,
    pub fps: f32,
    pub encoder_ms: f32,
    pub camera: CameraState,
    pub queue_depth: u8,
    pub frames_superseded: u32,
    pub capture_errors: u32,
    pub busy_rejections: u32,
    pub link_drops: LinkDrops,
    pub unsent: Unsent,
    pub encoder: EncoderState,
}

/// Where frames are embedded (docs/OFFLOAD.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncoderState {
    /// On the daemon's own machine.
    Local,
    /// By the inference server.
    Remote,
    /// The server does not answer: the local encoder stands in.
    Fallback,
    /// The server does not answer and nothing stands in: frames go unencoded.
    Down,
}

/// What the daemon could not write because the line took no bytes
/// (docs/PROTOCOL.md, section 6, "A line nobody reads").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsent {
    /// Answers cut or not sent; a resent request gets the kept answer.
    pub answers: u32,
    /// Heartbeats not sent (the next one replaces each).
    pub heartbeats: u32,
}

/// Every object in a frame: automatic mask generation on the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EverythingRequest {
    pub frame: FrameSelector,
    /// Grid points per image side, 1-64; 0 for the daemon's configured default.
    pub points_per_side: u8,
    /// Most objects sent, best predicted IoU first; 0 for all.
    pub max_objects: u16,
    pub output: Output,
}

/// The head of an EverythingRequest's answer: `objects` SegmentResults follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objects {
    pub frame_id: u32,
    pub frame_age_ms: u32,
    /// From the start of the job to its end, prompts answered meanwhile included.
    pub elapsed_ms: u32,
    /// Grid prompts decoded.
    pub prompts: u16,
    /// Objects found, before `max_objects` is applied.
    pub found: u16,
    /// Objects sent.
    pub objects: u16,
}

/// The wire error codes, in schema order (the variant index is the code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    BadCrc,
    UnknownVersion,
    UnknownKind,
    Oversize,
    MalformedBody,
    Busy,
    InvalidPrompt,
    NoFrame,
    Internal,
}

/// The body of an Error frame (the schema's `Error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_matches_the_protocol_document() {
        let doc = include_str!("../../docs/PROTOCOL.md");
        let start = doc.find("```schema\n").expect("schema block") + "```schema\n".len();
        let len = doc[start..].find("\n```").expect("end of schema block");
        assert_eq!(&doc[start..start + len], SCHEMA);
        assert!(doc.contains(&format!("schema hash is `0x{SCHEMA_HASH:08X}`")));
    }

    #[test]
    fn kind_bytes_round_trip_and_unknown_bytes_are_returned() {
        for kind in [
            Kind::Hello,
            Kind::Capabilities,
            Kind::SegmentRequest,
            Kind::SegmentResult,
            Kind::MaskChunk,
            Kind::GetStatus,
            Kind::Status,
            Kind::EverythingRequest,
            Kind::Objects,
            Kind::Error,
        ] {
            assert_eq!(Kind::try_from(kind as u8), Ok(kind));
        }
        assert_eq!(Kind::try_from(0x42), Err(0x42));
    }

    #[test]
    fn bodies_follow_the_documented_layout() {
        let request = Message::SegmentRequest(SegmentRequest {
            points: vec![Point {
                x: 300,
                y: 80,
                label: Label::Foreground,
            }],
            box_prompt: None,
            frame: FrameSelector::Id(5),
            output: Output {
                mask: MaskEncoding::Rle,
                downscale: 2,
            },
        });
        let body = request.to_body().expect("encodes");
        // count 1 | x=300 varint AC 02 | y=80 | label 1 | box absent | Id=1, 5 | Rle=1 | 2
        assert_eq!(body, [1, 0xac, 0x02, 80, 1, 0, 1, 5, 1, 2]);
        let error = Message::Error(ErrorReply {
            code: ErrorCode::Busy,
            message: "full".into(),
        });
        assert_eq!(
            error.to_body().expect("encodes"),
            [5, 4, b'f', b'u', b'l', b'l']
        );
    }

    #[test]
    fn trailing_bytes_and_bad_enums_are_rejected() {
        let hello = Message::Hello(Hello { client: "a".into() })
            .to_body()
            .expect("encodes");
        let mut long = hello.clone();
        long.push(0);
        assert!(matches!(
            Message::from_body(Kind::Hello, &long),
            Err(BodyError::TrailingBytes(1))
        ));
        assert!(matches!(
            Message::from_body(Kind::GetStatus, &[0]),
            Err(BodyError::TrailingBytes(1))
        ));
        assert!(matches!(
            Message::from_body(Kind::Error, &[9, 0]),
            Err(BodyError::Postcard(_))
        ));
        assert!(matches!(
            Message::from_body(Kind::Hello, &[5, b'a']),
            Err(BodyError::Postcard(_))
        ));
    }
}
