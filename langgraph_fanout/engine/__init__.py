"""The embedded model: llama.cpp in this process, as a LangChain chat model (``local``)."""
