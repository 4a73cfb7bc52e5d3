def test_tiny_model_loads_and_generates(tiny_model_dir):
    from s3ft.models import load_model, load_tokenizer

    model = load_model(str(tiny_model_dir))
    tok = load_tokenizer(str(tiny_model_dir))
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5 or out[0, -1].item() == tok.eos_token_id
