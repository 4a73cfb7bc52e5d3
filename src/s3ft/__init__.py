"""s3ft: Selective Self-to-Supervised Fine-Tuning (Gupta et al., NAACL Findings 2025).

Fine-tune a model on a task with targets in its own words: its own answer where the judge
accepts it, else its paraphrase of the gold where that is accepted, else the gold."""
from s3ft.types import Example, Verdict

__version__ = "0.1.0"
__all__ = ["Example", "Verdict", "__version__"]
