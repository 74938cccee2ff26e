"""File formats: the bitstream container (:mod:`.container`), model files (:mod:`.model_file`),
whole images to files and back (:mod:`.image_file`) and latents without the decoder
(:mod:`.latent_access`)."""
