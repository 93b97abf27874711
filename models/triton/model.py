"""Triton Python-backend model: SAM's image encoder on onnxruntime's CPU provider.

Shared by mobile_sam_encoder and mobile_sam_encoder_f16; serve.sh copies it
into each model's version directory beside the ONNX file that the model's
config.pbtxt names (`onnx_file`). Input and output names and types come from
config.pbtxt and must match the ONNX file.
"""

import json
import os
from pathlib import Path

import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# onnxruntime's element types for the config's data types used here.
ORT_TYPES = {"TYPE_UINT8": "tensor(uint8)", "TYPE_FP32": "tensor(float)", "TYPE_FP16": "tensor(float16)"}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = Path(args["model_repository"]) / args["model_version"] / params["onnx_file"]
        # 0 or unset: every CPU this process may run on.
        threads = int(params.get("intra_op_thread_count") or 0) or len(os.sched_getaffinity(0))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # the encoder is one chain of ops
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        (inp,), (out,) = config["input"], config["output"]
        (ort_in,), (ort_out,) = self.session.get_inputs(), self.session.get_outputs()
        for want, got in ((inp, ort_in), (out, ort_out)):
            if want["name"] != got.name or ORT_TYPES.get(want["data_type"]) != got.type:
                raise pb_utils.TritonModelException(
                    f"{path.name} has {got.name} {got.type}, config.pbtxt says "
                    f"{want['name']} {want['data_type']}")
        self.input_name, self.output_name = inp["name"], out["name"]
        # The image size the encoder pads to (its static output follows from it).
        self.max_side = int(self.session.get_modelmeta().custom_metadata_map.get("image_size", 1024))
        pb_utils.Logger.log_info(f"{args['model_name']}: {path.name}, {threads} onnxruntime threads")

    def check(self, image):
        """The reason `image` cannot be encoded, or None."""
        if image.dtype.name != "uint8":
            return f"{self.input_name} must be UINT8, got {image.dtype.name}"
        if image.ndim != 4 or image.shape[:2] != (1, 3):
            return f"{self.input_name} must be [1, 3, H, W] (one RGB image), got {list(image.shape)}"
        h, w = image.shape[2:]
        if not (0 < h <= self.max_side and 0 < w <= self.max_side):
            return (f"{self.input_name} is {h}x{w}: resize the image so that its longer side is "
                    f"{self.max_side}, without padding")
        return None

    def execute(self, requests):
        responses = []
        for request in requests:
            image = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            error = self.check(image)
            if error is None:
                try:
                    (embedding,) = self.session.run([self.output_name], {self.input_name: image})
                except Exception as e:  # one bad request must not fail the others
                    responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))))
                    continue
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, embedding)]))
            else:
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(error, pb_utils.TritonError.INVALID_ARG)))
        return responses
