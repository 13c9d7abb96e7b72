//! BERT (Devlin et al. 2018) as transformers writes it: word + position + token-type embeddings
//! (token type 0 throughout), post-LN blocks, and the sequence-classification head `pooler
//! (dense + tanh on [CLS]) -> dropout -> classifier`. Variable names equal transformers'.

use candle_core::{DType, Tensor};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::{
    attention_bias, check_inputs, dropout, embed, layer_norm_specs, linear_specs, positions,
    DropoutRng, Init, LayerNorm, Linear, ParamSpec, Params, PostLnBlock,
};

/// Every parameter of `BertForSequenceClassification` (pooler and classifier count as head).
pub fn param_specs(cfg: &ModelConfig, num_labels: usize) -> Vec<ParamSpec> {
    let h = cfg.hidden_size;
    let mut v = Vec::new();
    v.push(ParamSpec::new(
        "bert.embeddings.word_embeddings.weight",
        &[cfg.vocab_size, h],
        Init::NormalPad(cfg.pad_token_id),
        false,
    ));
    v.push(ParamSpec::new(
        "bert.embeddings.position_embeddings.weight",
        &[cfg.max_position_embeddings, h],
        Init::Normal,
        false,
    ));
    v.push(ParamSpec::new(
        "bert.embeddings.token_type_embeddings.weight",
        &[cfg.type_vocab_size, h],
        Init::Normal,
        false,
    ));
    layer_norm_specs(&mut v, "bert.embeddings.LayerNorm", h);
    for i in 0..cfg.num_layers {
        let p = format!("bert.encoder.layer.{i}");
        for lin in ["query", "key", "value"] {
            linear_specs(&mut v, &format!("{p}.attention.self.{lin}"), h, h, false);
        }
        linear_specs(&mut v, &format!("{p}.attention.output.dense"), h, h, false);
        layer_norm_specs(&mut v, &format!("{p}.attention.output.LayerNorm"), h);
        linear_specs(
            &mut v,
            &format!("{p}.intermediate.dense"),
            cfg.intermediate_size,
            h,
            false,
        );
        linear_specs(
            &mut v,
            &format!("{p}.output.dense"),
            h,
            cfg.intermediate_size,
            false,
        );
        layer_norm_specs(&mut v, &format!("{p}.output.LayerNorm"), h);
    }
    linear_specs(&mut v, "bert.pooler.dense", h, h, true);
    linear_specs(&mut v, "classifier", num_labels, h, true);
    v
}

/// The BERT encoder (`bert.embeddings.*`, `bert.encoder.*`).
pub struct Bert {
    cfg: ModelConfig,
    word: Tensor,
    pos: Tensor,
    token_type: Tensor,
    emb_ln: LayerNorm,
    blocks: Vec<PostLnBlock>,
}

impl Bert {
    /// Builds the encoder from variables named as in [`param_specs`].
    pub fn new(cfg: &ModelConfig, p: &Params<'_>) -> Result<Self> {
        let eps = cfg.layer_norm_eps;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let n = format!("bert.encoder.layer.{i}");
            blocks.push(PostLnBlock {
                q: p.linear(&format!("{n}.attention.self.query"))?,
                k: p.linear(&format!("{n}.attention.self.key"))?,
                v: p.linear(&format!("{n}.attention.self.value"))?,
                attn_out: p.linear(&format!("{n}.attention.output.dense"))?,
                attn_ln: p.layer_norm(&format!("{n}.attention.output.LayerNorm"), eps)?,
                ffn_in: p.linear(&format!("{n}.intermediate.dense"))?,
                ffn_out: p.linear(&format!("{n}.output.dense"))?,
                out_ln: p.layer_norm(&format!("{n}.output.LayerNorm"), eps)?,
                attn_out_dropout: true,
            });
        }
        Ok(Self {
            cfg: cfg.clone(),
            word: p.get("bert.embeddings.word_embeddings.weight")?,
            pos: p.get("bert.embeddings.position_embeddings.weight")?,
            token_type: p.get("bert.embeddings.token_type_embeddings.weight")?,
            emb_ln: p.layer_norm("bert.embeddings.LayerNorm", eps)?,
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
        let type0 = self.token_type.narrow(0, 0, 1)?.unsqueeze(0)?;
        let x = embed(&self.word, &ids)?
            .broadcast_add(&(positions(&self.pos, s)?.broadcast_add(&type0)?))?;
        let mut x = dropout(&self.emb_ln.forward(&x)?, cfg.hidden_dropout, &mut rng)?;
        for b in &self.blocks {
            x = b.forward(&x, &bias, cfg, &mut rng)?;
        }
        Ok(x)
    }
}

/// `pooler (dense + tanh on [CLS]) -> dropout -> classifier`.
pub struct BertHead {
    pooler: Linear,
    classifier: Linear,
    dropout: f64,
}

impl BertHead {
    /// Builds the head from `bert.pooler.dense.*` and `classifier.*`.
    pub fn new(cfg: &ModelConfig, p: &Params<'_>) -> Result<Self> {
        Ok(Self {
            pooler: p.linear("bert.pooler.dense")?,
            classifier: p.linear("classifier")?,
            dropout: cfg.classifier_dropout,
        })
    }

    /// Logits `[b, num_labels]` from hidden states `[b, s, hidden]`.
    pub fn forward(&self, hidden: &Tensor, mut rng: Option<&mut DropoutRng>) -> Result<Tensor> {
        // contiguous: CUDA matmul rejects the strided [CLS] slice (found on the first GPU run).
        let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
        let pooled = self.pooler.forward(&cls)?.tanh()?;
        let x = dropout(&pooled, self.dropout, &mut rng)?;
        self.classifier.forward(&x)
    }
}
