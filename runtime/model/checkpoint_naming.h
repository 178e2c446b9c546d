// Maps tensors of a pretrained checkpoint, as the training framework named and laid them out, onto the weight
// names and layouts a Tessera model spec declares (compiler/graph/graph.h).
//
// Each naming targets the canonical binding names of the matching example specs (examples/models/minilm.attn
// for BERT, gpt.attn for GPT-2): a spec that binds its layers under other names loads checkpoints saved in
// Tessera's own naming instead. Mapping is by rules, not by position in the file:
//   bert  embeddings.word_embeddings → word, embeddings.position_embeddings → position, token_type_embeddings →
//         token_type, embeddings.LayerNorm → embed_norm, encoder.layer.i.attention.self.{query,key,value} →
//         layer.i.attention.{query,key,value}, attention.output.dense → layer.i.attention.output,
//         attention.output.LayerNorm → layer.i.attention_norm, intermediate.dense → layer.i.ffn_in,
//         output.dense → layer.i.ffn_out, output.LayerNorm → layer.i.ffn_norm (gamma/beta read as weight/bias;
//         a leading "bert." is dropped).
//   gpt2  wte → word, wpe → position, h.i.ln_1 → layer.i.attention_norm, h.i.attn.c_attn (one [W, 3W] matrix,
//         split in three) → layer.i.attention.{query,key,value}, h.i.attn.c_proj → layer.i.attention.output,
//         h.i.ln_2 → layer.i.ffn_norm, h.i.mlp.c_fc → layer.i.ffn_in, h.i.mlp.c_proj → layer.i.ffn_out,
//         ln_f → final_norm (a leading "transformer." is dropped). GPT-2's Conv1D stores weights [in, out]: they
//         are transposed to nn.Linear's [out, in].
//   llama Hugging Face's LlamaForCausalLM (examples/models/llama_like.attn): model.embed_tokens → word,
//         model.layers.i.input_layernorm → layer.i.attention_norm, self_attn.{q,k,v,o}_proj →
//         layer.i.attention.{query,key,value,output}, post_attention_layernorm → layer.i.ffn_norm,
//         mlp.{gate,up,down}_proj → layer.i.{gate,up,ffn_out}, model.norm → final_norm, lm_head → logits.
// Tensors a checkpoint carries that no spec reads (BERT's pooler, the causal-mask buffers `attn.bias`, a tied
// `lm_head.weight`) come back as `unused`.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "runtime/model/model_error.h"
#include "runtime/tensor.h"

namespace tessera::runtime {

enum class CheckpointNaming { Tessera, Bert, Gpt2, Llama };

const char* checkpoint_naming_name(CheckpointNaming naming);  // "tessera", "bert", "gpt2", "llama"
// "tessera", "bert", "gpt2" or "llama"; throws ModelError listing the choices otherwise.
CheckpointNaming parse_checkpoint_naming(const std::string& text);

// bert when the names hold BERT's `embeddings.word_embeddings.weight`, gpt2 when they hold `wte.weight`, llama
// when they hold `model.embed_tokens.weight`, else tessera.
CheckpointNaming detect_checkpoint_naming(const std::vector<std::string>& names);

struct MappedCheckpoint {
  std::map<std::string, Tensor> tensors;  // by spec weight name, float32, in nn.Linear layout
  std::vector<std::string> unused;        // checkpoint names that map to nothing
};

// Renames (and for gpt2 splits and transposes) every tensor. `tensors` holds the checkpoint's float32 tensors by
// their names; they are moved out. Throws TensorError naming the checkpoint tensor when one the rules transform
// has a shape they cannot handle (a c_attn whose columns are not a multiple of 3, a matrix that is not 2-D).
MappedCheckpoint map_checkpoint(std::map<std::string, Tensor> tensors, CheckpointNaming naming);

}  // namespace tessera::runtime
