//! Prompts typed on stdin, one per line, answered with one JSON line each on
//! stdout: the quickest way to try the daemon by hand.
//!
//! A line holds points `X,Y[,LABEL]` (LABEL 1 object, the default, or 0
//! background), an optional `box=X0,Y0,X1,Y1` and an optional `frame=ID`,
//! separated by spaces: `320,240 300,100,0 frame=12`.

use std::io::{BufRead, Write};

use crossbeam_channel::bounded;
use serde_json::{json, Value};

use crate::model::{BoxPrompt, Point, Prompt};
use crate::pipeline::{FrameSelector, Job, Pipeline};
use crate::serial::shape;

/// Answers the prompts of `input` in order, writing to `output`, until `input` ends.
///
/// # Errors
/// `output` cannot be written.
pub fn run_prompts(input: impl BufRead, mut output: impl Write, pipeline: &Pipeline) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let answer = match parse_line(line) {
            Ok((prompt, frame)) => answer(pipeline, prompt, frame),
            Err(e) => json!({ "error": e }),
        };
        writeln!(output, "{answer}")?;
        output.flush()?;
    }
    Ok(())
}

fn answer(pipeline: &Pipeline, prompt: Prompt, frame: FrameSelector) -> Value {
    let (reply, replies) = bounded(1);
    if let Err((rejection, _)) = pipeline.submit(Job { prompt, frame, tag: 0, reply }) {
        return json!({ "error": rejection.to_string() });
    }
    let Ok(reply) = replies.recv() else {
        return json!({ "error": "the pipeline stopped" });
    };
    let answer = match reply.result {
        Ok(answer) => answer,
        Err(rejection) => return json!({ "error": rejection.to_string() }),
    };
    let mut fields = json!({
        "frame_id": answer.frame.id,
        "frame_age_ms": answer.frame_age.as_millis() as u64,
        "decode_ms": answer.decode.as_millis() as u64,
        "predicted_iou": answer.mask.predicted_iou,
        "stability": answer.mask.stability,
        "area": answer.mask.mask.area(),
    });
    if let Ok(Some(s)) = shape(&answer.mask.mask) {
        fields["bbox"] = json!([s.bbox.x0, s.bbox.y0, s.bbox.x1, s.bbox.y1]);
        fields["centroid"] = json!([s.centroid.x, s.centroid.y]);
        fields["angle"] = json!(s.angle);
        fields["grasp"] = json!([s.grasp.x, s.grasp.y]);
        fields["clearance"] = json!(s.clearance);
    }
    fields
}

/// A prompt line as a prompt and the frame it targets.
pub fn parse_line(line: &str) -> Result<(Prompt, FrameSelector), String> {
    let mut prompt = Prompt { points: Vec::new(), bbox: None, mask_input: None };
    let mut frame = FrameSelector::Latest;
    for word in line.split_whitespace() {
        if let Some(id) = word.strip_prefix("frame=") {
            frame = FrameSelector::Id(id.parse().map_err(|_| format!("{word:?}: the frame id must be a whole number"))?);
        } else if let Some(corners) = word.strip_prefix("box=") {
            let [x0, y0, x1, y1] = numbers(corners).and_then(|n| <[f32; 4]>::try_from(n).ok()).ok_or_else(|| {
                format!("{word:?}: a box is box=X0,Y0,X1,Y1")
            })?;
            prompt.bbox = Some(BoxPrompt { x0, y0, x1, y1 });
        } else {
            let point = match numbers(word).as_deref() {
                Some(&[x, y]) | Some(&[x, y, 1.0]) => Point::foreground(x, y),
                Some(&[x, y, 0.0]) => Point::background(x, y),
                _ => return Err(format!("{word:?}: a point is X,Y or X,Y,LABEL with LABEL 1 (object) or 0 (background)")),
            };
            prompt.points.push(point);
        }
    }
    Ok((prompt, frame))
}

fn numbers(list: &str) -> Option<Vec<f32>> {
    list.split(',').map(|n| n.trim().parse::<f32>().ok().filter(|v| v.is_finite())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PointLabel;

    #[test]
    fn a_line_holds_points_a_box_and_a_frame() {
        let (prompt, frame) = parse_line("320,240 300,100,0 box=10,20,200,220 frame=12").unwrap();
        assert_eq!(prompt.points.len(), 2);
        assert_eq!(prompt.points[1].label, PointLabel::Background);
        assert_eq!(prompt.bbox, Some(BoxPrompt { x0: 10.0, y0: 20.0, x1: 200.0, y1: 220.0 }));
        assert_eq!(frame, FrameSelector::Id(12));
    }

    #[test]
    fn bad_words_are_quoted_in_the_error() {
        for bad in ["320", "1,2,3", "box=1,2,3", "frame=x", "a,b", "nan,1"] {
            let err = parse_line(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
