"""The shop's catalogue: its products as visrec reads them, image vectors, embedders, fine-tuning."""
