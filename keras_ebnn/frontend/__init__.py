"""Front end: Keras/Larq models -> IR (lowering), model files loaded safely, the audio front end."""
