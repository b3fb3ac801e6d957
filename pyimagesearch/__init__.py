"""pokedex: train SmallerVGGNet on a folder-per-class dataset and classify images.

    from pyimagesearch import Pokedex
    dex = Pokedex.load("pokedex.model", "lb.pickle")
    dex.classify("examples/pikachu.png")

`Pokedex` (pyimagesearch/api.py) is imported on first use, so `import
pyimagesearch` stays cheap: the scripts import it before they know whether
they need NumPy or TensorFlow at all.
"""


def __getattr__(name):
    if name == "Pokedex":
        from pyimagesearch.api import Pokedex

        return Pokedex
    raise AttributeError(f"module 'pyimagesearch' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + ["Pokedex"])
