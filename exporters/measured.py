"""Measured figures of the runtime kernels. GENERATED: do not edit by hand; the bench script named
for each table measures it and rewrites this file (bench/common.py write_measured).

COMPILERS: the compilers the tables were measured with (`CC --version`, first line's version).
CODE_BYTES (exporters/c.py): machine code of each fused-block kernel with its static helpers, and of the
  generated predict function ("predict" + "predict_per_block" per kernel call), Cortex-M3 -mthumb -O2
  -ffunction-sections (`arm-none-eabi-nm -S` of the kernel objects and of a generated NAME.o); "common":
  the popcount helpers; "output_dense" includes the integer binary32 logits code of FPU-less cores.
  No script measures it yet (measured by hand with the command above).
GRAPH_CODE_BYTES (exporters/graph_c.py): the same per graph kernel entry point and per group of static
  helpers they share; "soft_float": libgcc's single-precision routines an FPU-less core pulls in (a
  linked Cortex-M3 program). No script measures it yet (measured by hand as CODE_BYTES).
STACK_BYTES (exporters/c.py; `python bench/stack.py`): stack bound of each fused-block kernel's deepest
  call chain and of what the generated predict functions add, per target and build ("default": no -D;
  "small": -DEBNN_CHUNK=8 -DEBNN_LOW_STACK=1), the maximum over -O1, -O2, -O3, -Os of keras_ebnn.planning.stackcheck
  on the shipped models, rounded up to 16 B.
GRAPH_STACK_BY_TARGET (exporters/graph_c.py; `python bench/graph_stack.py`): the same for the graph
  kernel files (maximum over both builds, whose options they do not read); "elementwise_libm" /
  "conv_pool_libm": with tanh / sigmoid (EBNN_ACT_LIBM=1).
Other compilers or versions can differ: `python -m keras_ebnn.planning.stackcheck OUT --target T -O2 [-D...]`
bounds the stack of the build you ship; the target's size tool gives its exact code size.
"""

COMPILERS = {'arm-none-eabi-gcc': '12.2.1', 'avr-gcc': '5.4.0'}

CODE_BYTES = {
    'common': 290, 'input_conv_int': 2700, 'input_conv_f32': 950, 'binary_conv': 1700, 'binary_dense': 210,
    'output_dense': 900, 'predict': 40, 'predict_per_block': 30,
}

GRAPH_CODE_BYTES = {
    'ebnn_bconv_acc': 540, 'ebnn_bdense_acc': 140, 'ebnn_bdepthwise_acc': 506, 'binary_acc helpers': 440,
    'ebnn_conv_f32': 44, 'ebnn_conv_w8': 48, 'ebnn_depthwise_f32': 44, 'ebnn_depthwise_w8': 40,
    'conv core': 628, 'ebnn_dense_f32': 196, 'ebnn_dense_w8': 192, 'ebnn_avg_pool_f32': 330,
    'ebnn_max_pool_bits': 262, 'ebnn_max_pool_f32': 300, 'ebnn_max_pool_i32': 218, 'ebnn_sum_pool_bits': 230,
    'ebnn_sum_pool_i32': 228, 'pool helpers': 304, 'ebnn_activation_f32': 256, 'ebnn_add_f32': 56,
    'ebnn_div_f32': 158, 'ebnn_affine_f32': 190, 'ebnn_argmax_f32': 82, 'ebnn_bits_to_f32': 84,
    'ebnn_concat_bits': 232, 'ebnn_concat_f32': 148, 'ebnn_i32_to_f32': 200, 'ebnn_sign_f32': 78,
    'ebnn_sign_i32': 66, 'ebnn_threshold_f32': 162, 'ebnn_threshold_i32': 178, 'soft_float': 1450,
    'ebnn_conv_pool_f32': 1838, 'ebnn_conv_pool_need': 130, 'conv_pool helpers': 1342, 'ebnn_conv_s8': 68,
    'ebnn_depthwise_s8': 64, 'ebnn_conv_s8_bits': 70, 'conv_s8 core': 5372, 'ebnn_dense_s8': 216,
    'ebnn_requant': 252, 'ebnn_lut_s8': 46, 'ebnn_add_s8': 230, 'ebnn_concat_s8': 336, 'ebnn_bits_to_s8': 62,
    'ebnn_threshold_s8': 170, 'ebnn_argmax_i32': 50, 'mbqm': 212, 'ebnn_max_pool_s8': 20,
    'ebnn_avg_pool_s8': 18, 'pool_s8 core': 448,
}

STACK_BYTES = {
    'cortex-m0plus': {
        'default': {
            'input_conv_int': 1360, 'input_conv_f32': 1568, 'binary_conv': 496, 'binary_dense': 128,
            'output_dense': 160, 'predict': 48,
        },
        'small': {
            'input_conv_int': 592, 'input_conv_f32': 784, 'binary_conv': 400, 'binary_dense': 128,
            'output_dense': 160, 'predict': 48,
        },
    },
    'cortex-m3': {
        'default': {
            'input_conv_int': 1376, 'input_conv_f32': 1584, 'binary_conv': 464, 'binary_dense': 112,
            'output_dense': 128, 'predict': 48,
        },
        'small': {
            'input_conv_int': 576, 'input_conv_f32': 784, 'binary_conv': 368, 'binary_dense': 112,
            'output_dense': 128, 'predict': 48,
        },
    },
    'cortex-m4': {
        'default': {
            'input_conv_int': 1376, 'input_conv_f32': 1552, 'binary_conv': 464, 'binary_dense': 112,
            'output_dense': 96, 'predict': 48,
        },
        'small': {
            'input_conv_int': 576, 'input_conv_f32': 752, 'binary_conv': 368, 'binary_dense': 112,
            'output_dense': 96, 'predict': 48,
        },
    },
    'avr': {
        'default': {
            'input_conv_int': 464, 'input_conv_f32': 448, 'binary_conv': 272, 'binary_dense': 64,
            'output_dense': 64, 'predict': 32,
        },
        'small': {
            'input_conv_int': 464, 'input_conv_f32': 448, 'binary_conv': 272, 'binary_dense': 64,
            'output_dense': 64, 'predict': 32,
        },
    },
}

GRAPH_STACK_BY_TARGET = {
    'cortex-m0plus': {
        'conv_pool': 480, 'conv_pool_libm': 544, 'binary_acc': 320, 'conv_f32': 288, 'dense_f32': 112,
        'pool': 208, 'elementwise': 96, 'elementwise_libm': 144, 'predict': 128, 'conv_s8': 640,
        'dense_s8': 96, 'quant_s8': 208,
    },
    'cortex-m3': {
        'conv_pool': 496, 'conv_pool_libm': 560, 'binary_acc': 304, 'conv_f32': 272, 'dense_f32': 80,
        'pool': 192, 'elementwise': 112, 'elementwise_libm': 160, 'predict': 128, 'conv_s8': 624,
        'dense_s8': 96, 'quant_s8': 160,
    },
    'cortex-m4': {
        'conv_pool': 416, 'conv_pool_libm': 448, 'binary_acc': 304, 'conv_f32': 256, 'dense_f32': 64,
        'pool': 160, 'elementwise': 96, 'elementwise_libm': 80, 'predict': 128, 'conv_s8': 624,
        'dense_s8': 96, 'quant_s8': 160,
    },
    'avr': {
        'conv_pool': 416, 'conv_pool_libm': 448, 'binary_acc': 208, 'conv_f32': 208, 'dense_f32': 80,
        'pool': 176, 'elementwise': 64, 'elementwise_libm': 64, 'predict': 64, 'conv_s8': 480, 'dense_s8': 64,
        'quant_s8': 176,
    },
}
