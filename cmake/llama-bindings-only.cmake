# Included by llama.cpp's own project() when `make install` builds llama-cpp-python: the Python
# bindings load only libllama and libggml*, so llama.cpp's common/ library (which the
# bindings' CMakeLists forces on) is neither built nor installed.
set(LLAMA_BUILD_COMMON OFF)
