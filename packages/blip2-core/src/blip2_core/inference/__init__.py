"""Running a loaded model on images: the predictor (captions, answers, features), batching and image sources.

What blip2-predict and blip2-serve share; it knows nothing about result files or HTTP.
"""
