/* keras-ebnn MNIST sample: classifies the test images embedded in the exported module
 * (include/mnist_samples.h) with mnist_predict() and prints the accuracy. */
#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "mnist.h"
#include "mnist_samples.h"

int main(void)
{
    static mnist_input_t input[mnist_INPUT_LEN];
    float scores[mnist_NUM_CLASSES];
    int correct = 0;

    printk("keras-ebnn mnist: %d images, %u bytes of scratch\n", mnist_NUM_SAMPLES, mnist_SCRATCH_SIZE);
    for (int i = 0; i < mnist_NUM_SAMPLES; i++) {
        for (unsigned k = 0; k < mnist_INPUT_LEN; k++) {
            input[k] = mnist_samples[i][k];
        }
        uint32_t start = k_cycle_get_32();
        int cls = mnist_predict(input, scores);
        uint32_t cycles = k_cycle_get_32() - start;
        correct += (cls == mnist_sample_labels[i]);
        printk("image %d: class %d label %d (%u cycles)\n", i, cls, mnist_sample_labels[i], cycles);
    }
    printk("accuracy: %d/%d\n", correct, mnist_NUM_SAMPLES);
    return 0;
}
