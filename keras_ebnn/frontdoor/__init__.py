"""Export front door: export(), the Keras callback, verification, host C builds, reports."""
