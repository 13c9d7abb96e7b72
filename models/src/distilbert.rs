//! DistilBERT (Sanh et al. 2019) as transformers writes it: learned positions, no token types,
//! post-LN blocks, and the sequence-classification head `pre_classifier -> ReLU -> dropout ->
//! classifier` on the first token. Variable names equal transformers' checkpoint names.

use candle_core::{DType, Tensor};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::{
    attention_bias, check_inputs, dropout, embed, layer_norm_specs, linear_specs, positions,
    DropoutRng, Init, LayerNorm, Linear, ParamSpec, Params, PostLnBlock,
};

/// Every parameter of `DistilBertForSequenceClassification` (head last).
pub fn param_specs(cfg: &ModelConfig, num_labels: usize) -> Vec<ParamSpec> {
    let h = cfg.hidden_size;
    let mut v = Vec::new();
    v.push(ParamSpec::new(
        "distilbert.embeddings.word_embeddings.weight",
        &[cfg.vocab_size, h],
        Init::NormalPad(cfg.pad_token_id),
        false,
    ));
    v.push(ParamSpec::new(
        "distilbert.embeddings.position_embeddings.weight",
        &[cfg.max_position_embeddings, h],
        Init::Normal,
        false,
    ));
    layer_norm_specs(&mut v, "distilbert.embeddings.LayerNorm", h);
    for i in 0..cfg.num_layers {
        let p = format!("distilbert.transformer.layer.{i}");
        for lin in ["q_lin", "k_lin", "v_lin", "out_lin"] {
            linear_specs(&mut v, &format!("{p}.attention.{lin}"), h, h, false);
        }
        layer_norm_specs(&mut v, &format!("{p}.sa_layer_norm"), h);
        linear_specs(
            &mut v,
            &format!("{p}.ffn.lin1"),
            cfg.intermediate_size,
            h,
            false,
        );
        linear_specs(
            &mut v,
            &format!("{p}.ffn.lin2"),
            h,
            cfg.intermediate_size,
            false,
        );
        layer_norm_specs(&mut v, &format!("{p}.output_layer_norm"), h);
    }
    linear_specs(&mut v, "pre_classifier", h, h, true);
    linear_specs(&mut v, "classifier", num_labels, h, true);
    v
}

/// The DistilBERT encoder (`distilbert.*`).
pub struct DistilBert {
    cfg: ModelConfig,
    word: Tensor,
    pos: Tensor,
    emb_ln: LayerNorm,
    blocks: Vec<PostLnBlock>,
}

impl DistilBert {
    /// Builds the encoder from variables named as in [`param_specs`].
    pub fn new(cfg: &ModelConfig, p: &Params<'_>) -> Result<Self> {
        let eps = cfg.layer_norm_eps;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let n = format!("distilbert.transformer.layer.{i}");
            blocks.push(PostLnBlock {
                q: p.linear(&format!("{n}.attention.q_lin"))?,
                k: p.linear(&format!("{n}.attention.k_lin"))?,
                v: p.linear(&format!("{n}.attention.v_lin"))?,
                attn_out: p.linear(&format!("{n}.attention.out_lin"))?,
                attn_ln: p.layer_norm(&format!("{n}.sa_layer_norm"), eps)?,
                ffn_in: p.linear(&format!("{n}.ffn.lin1"))?,
                ffn_out: p.linear(&format!("{n}.ffn.lin2"))?,
                out_ln: p.layer_norm(&format!("{n}.output_layer_norm"), eps)?,
                attn_out_dropout: false,
            });
        }
        Ok(Self {
            cfg: cfg.clone(),
            word: p.get("distilbert.embeddings.word_embeddings.weight")?,
            pos: p.get("distilbert.embeddings.position_embeddings.weight")?,
            emb_ln: p.layer_norm("distilbert.embeddings.LayerNorm", eps)?,
            blocks,
        })
    }

    /// Last hidden states `[b, s, hidden]`; dropout only when `rng` is given.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        mut rng: Option<&mut DropoutRng>,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let dtype: DType = self.word.dtype();
        let (ids, mask) = check_inputs(
            input_ids,
            attention_mask,
            cfg.vocab_size,
            cfg.max_position_embeddings,
            dtype,
        )?;
        let (_, s) = ids.dims2()?;
        let bias = attention_bias(&mask)?;
        let x = embed(&self.word, &ids)?.broadcast_add(&positions(&self.pos, s)?)?;
        let mut x = dropout(&self.emb_ln.forward(&x)?, cfg.hidden_dropout, &mut rng)?;
        for b in &self.blocks {
            x = b.forward(&x, &bias, cfg, &mut rng)?;
        }
        Ok(x)
    }
}

/// `pre_classifier -> ReLU -> dropout -> classifier` on the first token.
pub struct DistilBertHead {
    pre: Linear,
    classifier: Linear,
    dropout: f64,
}

impl DistilBertHead {
    /// Builds the head from `pre_classifier.*` and `classifier.*`.
    pub fn new(cfg: &ModelConfig, p: &Params<'_>) -> Result<Self> {
        Ok(Self {
            pre: p.linear("pre_classifier")?,
            classifier: p.linear("classifier")?,
            dropout: cfg.classifier_dropout,
        })
    }

    /// Logits `[b, num_labels]` from hidden states `[b, s, hidden]`.
    pub fn forward(&self, hidden: &Tensor, mut rng: Option<&mut DropoutRng>) -> Result<Tensor> {
        // contiguous: CUDA matmul rejects the strided [CLS] slice (found on the first GPU run).
        let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
        let x = self.pre.forward(&cls)?.relu()?;
        let x = dropout(&x, self.dropout, &mut rng)?;
        self.classifier.forward(&x)
    }
}
