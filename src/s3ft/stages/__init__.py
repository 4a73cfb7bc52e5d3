"""The pipeline's stages, one module each, every one a plain function of what it works on:

    generate    the base model answers the training inputs           -> own.jsonl
    judge       the judge scores them against the gold                -> own_judged.jsonl
    sample      k sampled answers per input (rft, grape, s3ft_k)      -> samples.jsonl
                (judged by judge.samples                              -> samples_judged.jsonl)
    paraphrase  the base model rewrites the gold; filtered and judged  -> paraphrase.jsonl
    likelihood  log-likelihood per token of the candidates grape and s3ft_k pick among -> likelihood.jsonl
    build       the method's training rows (own / sampled / paraphrase / gold) -> train.<method>.jsonl
    train       LoRA or full fine-tuning with TRL                       -> <method>/model/
    evaluate    a model answers the evaluation split, judged           -> eval/<name>.jsonl
    general     general-ability benchmarks (lm-evaluation-harness)     -> general/<name>/
    logprob     log p(target | prompt) under the base model            -> logprob.jsonl
    summarize   metrics.json and summary.md of a run

`common` holds the bookkeeping they share (skip, --force, fingerprint, resume, manifest);
`s3ft.pipeline` calls them in order."""
