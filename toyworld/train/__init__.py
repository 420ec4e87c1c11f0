"""The toyworld model's trainers: how `assets/toyworld` was made, reproducibly, from a seed.

    python -m toyworld.train --out NEW --threads 2          # CLIP -> VAE -> text tower -> UNet -> decoder
    python -m toyworld.train.pairs --base NEW --out FINAL   # the appearance-pair stage on a finished model

`chain.py` runs the stages in order (one module per stage: clip, vae, text_tower, unet, decoder, pairs);
`data`, `models`, `tokenizer`, `export` and `run_log` are what the stages share. Nothing outside this
package imports it: the studio and the evaluation only read the model it wrote.
"""
