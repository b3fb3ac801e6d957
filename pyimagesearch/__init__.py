"""pokedex: train SmallerVGGNet on a folder-per-class dataset and classify images."""
