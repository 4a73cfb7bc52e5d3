"""The pipeline's stages, one module each, every one a plain function of what it works on:

    generate    the base model answers the training inputs           -> own.jsonl
    judge       the judge scores them against the gold                -> own_judged.jsonl
    paraphrase  the base model rewrites the gold; filtered and judged  -> paraphrase.jsonl
    build       the method's training rows (own / paraphrase / gold)  -> train.<method>.jsonl
    train       LoRA or full fine-tuning with TRL                       -> <method>/model/
    evaluate    a model answers the evaluation split, judged           -> eval/<name>.jsonl
    general     general-ability benchmarks (lm-evaluation-harness)     -> general/<name>/
    logprob     log p(target | prompt) under the base model            -> logprob.jsonl
    summarize   metrics.json and summary.md of a run

`common` holds the bookkeeping they share (skip, --force, fingerprint, resume, manifest);
`s3ft.pipeline` calls them in order."""
