"""SAM's prompt encoder + mask decoder split into a per-frame and a per-prompt part.

The same function as export.PromptDecoder, rearranged so that a prompt costs
about half the multiply-adds:

- FrameDecoder runs once per embedding (and mask input). It adds the dense
  prompt embedding to the image embedding and computes the first layer's
  image-side projections: the keys and values of the token-to-image
  attention and the queries of the image-to-token attention. None of these
  depend on the points.
- PointDecoder runs per prompt, for a batch of B prompts with the same
  number of points. Where an attention has 4096 image tokens on one side and
  a handful of prompt tokens (T) on the other, it multiplies the small
  side's projections into the weights first (q.(Wk x) = (q Wk).x,
  P (Wv x) = (P x) Wv, out_proj(P v) = P (v out_proj)), so no 4096 x 256 x 128
  projection is computed per prompt. The key bias of a token-to-image
  attention adds the same value to every image score of a query, which
  softmax ignores: it is dropped.

The dense positional encoding is a constant of both parts.
"""

import math

import torch
from torch import nn


def softmax_tokens(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the prompt tokens of scores laid out [B, H, T, hw]: the
    short token axis is not the innermost one, so the exp and sum run over
    whole 4096-wide rows. tract's Softmax and ReduceMax over a short axis
    loop per row and cost more than the arithmetic, so the stabilizer is the
    score of token 0 (the IoU token, always present) instead of the max: the
    sum then holds exp(0) = 1 and cannot underflow. Scores above it by more
    than 80 would overflow exp and are clipped there; on GrabCut's photos with
    1-20 random points and boxes the largest excess was 18.4."""
    e = torch.exp(torch.clamp(x - x[:, :, :1], max=80.0))
    return e / e.sum(2, keepdim=True)


def heads_rows(linear: nn.Linear, heads: int) -> torch.Tensor:
    """Weight [H*d, C] as [H, d, C]: head h's rows."""
    out, c = linear.weight.shape
    return linear.weight.detach().reshape(heads, out // heads, c)


class FrameDecoder(nn.Module):
    """image_embeddings [1,C,h,w], mask_input, has_mask_input ->
    keys [1,hw,C], t2i_keys [1,H,d,hw], t2i_values [1,H,hw,d], i2t_queries [1,H,d,hw]."""

    def __init__(self, prompt_decoder):
        super().__init__()
        self.prompt_decoder = prompt_decoder
        transformer = prompt_decoder.mask_decoder.transformer
        self.layer = transformer.layers[0]
        self.heads = transformer.num_heads
        self.register_buffer("image_pe", prompt_decoder.prompt_encoder.get_dense_pe().detach()
                             .flatten(2).permute(0, 2, 1).contiguous())

    def split(self, x):
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, image_embeddings, mask_input, has_mask_input):
        dense = self.prompt_decoder._embed_masks(mask_input, has_mask_input)
        keys = (image_embeddings + dense).flatten(2).permute(0, 2, 1)
        keys_pe = keys + self.image_pe
        t2i = self.layer.cross_attn_token_to_image
        i2t = self.layer.cross_attn_image_to_token
        t2i_keys = self.split(t2i.k_proj(keys_pe)).transpose(2, 3)
        t2i_values = self.split(t2i.v_proj(keys))
        i2t_queries = self.split(i2t.q_proj(keys_pe)).transpose(2, 3)
        return keys, t2i_keys, t2i_values, i2t_queries


class PointDecoder(nn.Module):
    """keys, t2i_keys, t2i_values, i2t_queries (from FrameDecoder),
    point_coords [B,N,2], point_labels [B,N] -> iou_predictions [B,4], low_res_masks [B,4,m,m]."""

    def __init__(self, prompt_decoder):
        super().__init__()
        self.prompt_decoder = prompt_decoder
        md = prompt_decoder.mask_decoder
        self.md = md
        self.transformer = md.transformer
        self.heads = md.transformer.num_heads
        self.register_buffer("image_pe", prompt_decoder.prompt_encoder.get_dense_pe().detach()
                             .flatten(2).permute(0, 2, 1).contiguous())
        self.register_buffer("output_tokens", torch.cat(
            [md.iou_token.weight, md.mask_tokens.weight], dim=0).detach())
        self.embed_hw = prompt_decoder.prompt_encoder.image_embedding_size

    def split(self, x):
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def merge(self, x):
        b, h, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, h * d)

    @staticmethod
    def heads_out(attn_mod, attn, v):
        """out_proj(concat_h P_h v_h) for P [B,H,T,hw], v [B,H,T,d], as one
        [B,hw,H*T] x [B,H*T,C] product."""
        b, h, t, hw = attn.shape
        w_o = attn_mod.out_proj.weight.detach()  # [C, H*d]
        vo = v @ w_o.t().reshape(h, w_o.shape[1] // h, -1)  # [B,H,T,C]
        return attn.reshape(b, h * t, hw).transpose(1, 2) @ vo.reshape(b, h * t, -1) + attn_mod.out_proj.bias

    def image_to_token(self, attn_mod, image_q, tokens_k, tokens_v):
        """Image tokens attend to prompt tokens. image_q [1,H,d,hw] already
        projected; returns [B,hw,C]."""
        k = self.split(attn_mod.k_proj(tokens_k))  # [B,H,T,d]
        v = self.split(attn_mod.v_proj(tokens_v))
        d = k.shape[-1]
        attn = softmax_tokens((k @ image_q) / math.sqrt(d))  # [B,H,T,hw]
        return self.heads_out(attn_mod, attn, v)

    def image_to_token_lowrank(self, attn_mod, keys_pe, tokens_k, tokens_v):
        """As image_to_token, with the image queries' projection folded into
        the tokens' keys: k.(Wq x + bq) = (k Wq).x + k.bq."""
        k = self.split(attn_mod.k_proj(tokens_k))  # [B,H,T,d]
        v = self.split(attn_mod.v_proj(tokens_v))
        b, h, t, d = k.shape
        kq = (k @ heads_rows(attn_mod.q_proj, h)).reshape(b, h * t, -1)  # [B,H*T,C]
        bias = (k @ attn_mod.q_proj.bias.detach().reshape(h, d, 1)).reshape(b, h * t, 1)
        scores = (kq @ keys_pe.transpose(1, 2) + bias) / math.sqrt(d)  # [B,H*T,hw]
        attn = softmax_tokens(scores.reshape(b, h, t, -1))
        return self.heads_out(attn_mod, attn, v)

    def token_to_image_lowrank(self, attn_mod, tokens_q, keys_pe, keys):
        """Prompt tokens attend to image tokens, without projecting the image:
        scores (q Wk) x^T (the key bias is constant per query row, softmax
        drops it), values (P x) Wv^T + bv (softmax rows sum to 1)."""
        q = self.split(attn_mod.q_proj(tokens_q))  # [B,H,T,d]
        b, h, t, d = q.shape
        qk = (q @ heads_rows(attn_mod.k_proj, h)).reshape(b, h * t, -1)  # [B,H*T,C]
        scores = (qk @ keys_pe.transpose(1, 2)) / math.sqrt(d)  # [B,H*T,hw]
        attn = torch.softmax(scores, dim=-1)
        px = (attn @ keys).reshape(b, h, t, -1)  # [B,H,T,C]
        w_v = heads_rows(attn_mod.v_proj, h).transpose(1, 2)  # [H,C,d]
        out = px @ w_v + attn_mod.v_proj.bias.detach().reshape(h, 1, d)
        return attn_mod.out_proj(self.merge(out))

    def upscaled_masks(self, keys, hyper_in):
        """output_upscaling (ConvT 2x2/2, LayerNorm2d, GELU, ConvT 2x2/2, GELU)
        and the hypernetwork product, with each stride-2 transposed conv as a
        per-pixel matmul: the 2x2 sub-pixels stay as axes until one final
        transpose of the 4 small masks, instead of interleaving two large
        feature maps."""
        ct1, ln, act1, ct2, act2 = self.md.output_upscaling
        b, hw, c = keys.shape
        h, w = self.embed_hw
        c1, c2 = ct1.out_channels, ct2.out_channels
        # Each bias is added before the reshape, tiled over the 4 sub-pixels,
        # so that tract fuses it into its matmul.
        w1 = ct1.weight.detach().permute(0, 2, 3, 1).reshape(c, 4 * c1)  # [C, (kh,kw,o)]
        x = (keys @ w1 + ct1.bias.detach().repeat(4)).reshape(b, hw, 4, c1)
        x = act1(torch.nn.functional.layer_norm(x, (c1,), ln.weight, ln.bias, ln.eps))
        w2 = ct2.weight.detach().permute(0, 2, 3, 1).reshape(c1, 4 * c2)
        x = act2((x @ w2 + ct2.bias.detach().repeat(4)).reshape(b, hw * 16, c2))
        m = (x @ hyper_in.transpose(1, 2))  # [B, (i,j,a,b,c,d), tokens]
        t = hyper_in.shape[1]
        m = m.reshape(b, h, w, 2, 2, 2, 2, t).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return m.reshape(b, t, 4 * h, 4 * w)

    def forward(self, keys, t2i_keys, t2i_values, i2t_queries, point_coords, point_labels):
        sparse = self.prompt_decoder._embed_points(point_coords, point_labels)
        b = sparse.shape[0]
        tokens = torch.cat([self.output_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        layers = self.transformer.layers

        # Layer 1 (no positional encoding on its self-attention).
        l1 = layers[0]
        queries = l1.norm1(l1.self_attn(q=tokens, k=tokens, v=tokens))
        t2i = l1.cross_attn_token_to_image
        q = self.split(t2i.q_proj(queries + tokens))
        d = q.shape[-1]
        attn = torch.softmax((q @ t2i_keys) / math.sqrt(d), dim=-1)
        queries = l1.norm2(queries + t2i.out_proj(self.merge(attn @ t2i_values)))
        queries = l1.norm3(queries + l1.mlp(queries))
        keys = l1.norm4(keys + self.image_to_token(
            l1.cross_attn_image_to_token, i2t_queries, queries + tokens, queries))

        # Layer 2 onwards.
        for layer in layers[1:]:
            q = queries + tokens
            queries = layer.norm1(queries + layer.self_attn(q=q, k=q, v=queries))
            keys_pe = keys + self.image_pe
            queries = layer.norm2(queries + self.token_to_image_lowrank(
                layer.cross_attn_token_to_image, queries + tokens, keys_pe, keys))
            queries = layer.norm3(queries + layer.mlp(queries))
            keys = layer.norm4(keys + self.image_to_token_lowrank(
                layer.cross_attn_image_to_token, keys_pe, queries + tokens, queries))

        keys_pe = keys + self.image_pe
        queries = self.transformer.norm_final_attn(queries + self.token_to_image_lowrank(
            self.transformer.final_attn_token_to_image, queries + tokens, keys_pe, keys))

        md = self.md
        hyper_in = torch.stack(
            [mlp(queries[:, 1 + i, :]) for i, mlp in enumerate(md.output_hypernetworks_mlps)], dim=1)
        masks = self.upscaled_masks(keys, hyper_in)
        iou = md.iou_prediction_head(queries[:, 0, :])
        return iou, masks
