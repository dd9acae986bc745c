/* Runs an exported keras-ebnn model over a file of labelled test images and prints the accuracy.
 *
 * Build (the demo does this):  cc -std=c99 -O2 -I OUT -DMODEL_HEADER='"mnist.h"' -DMODEL=mnist \
 *                                  $(find OUT -name '*.c') examples/main.c -o demo
 * Run:                         ./demo samples.bin
 * samples.bin holds records of one label byte followed by MODEL_INPUT_LEN uint8 pixels. */
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#ifndef MODEL_HEADER
#define MODEL_HEADER "mnist.h"
#endif
#ifndef MODEL
#define MODEL mnist
#endif
#include MODEL_HEADER

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define PREDICT CAT(MODEL, _predict)
#define INPUT_LEN CAT(MODEL, _INPUT_LEN)
#define NUM_CLASSES CAT(MODEL, _NUM_CLASSES)
typedef CAT(MODEL, _input_t) input_t;

int main(int argc, char **argv)
{
    static uint8_t record[1 + INPUT_LEN];
    static input_t input[INPUT_LEN];
    float scores[NUM_CLASSES];
    long total = 0, correct = 0;
    double seconds = 0.0;
    FILE *f;
    if (argc != 2) {
        fprintf(stderr, "usage: %s SAMPLES.bin\n", argv[0]);
        return 2;
    }
    f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 2;
    }
    while (fread(record, 1, sizeof(record), f) == sizeof(record)) {
        clock_t start;
        unsigned i;
        int cls;
        for (i = 0; i < INPUT_LEN; i++)
            input[i] = (input_t)record[1 + i]; /* uint8 model: raw pixels; float model: 0..255 */
        start = clock();
        cls = PREDICT(input, scores);
        seconds += (double)(clock() - start) / CLOCKS_PER_SEC;
        correct += (cls == record[0]);
        total++;
    }
    fclose(f);
    if (total == 0) {
        fprintf(stderr, "no records in %s\n", argv[1]);
        return 1;
    }
    printf("C: %ld/%ld correct = %.2f%% accuracy, %.1f us per image (host clock)\n", correct, total,
           100.0 * (double)correct / (double)total, 1e6 * seconds / (double)total);
    return 0;
}
