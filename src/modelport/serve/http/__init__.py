"""HTTP adapters: KServe V2 REST with Triton's binary tensor extension (more API families can be
registered in ``modelport.serve.http.app.HTTP_APIS``). Never imports onnxruntime."""
