"""The convolutional network: airbench's recipe in PyTorch, trained through Spark's TorchDistributor.

``network`` (the model, pure torch; ``weight_grad`` its faster bfloat16 weight gradients),
``training`` (what each torchrun process runs), ``inference`` (a trained network labelling image
bytes), ``settings`` (defaults and checks, no torch) and ``stages`` (the pyspark.ml Estimator and
Model).
"""
