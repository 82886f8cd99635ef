// mercury/data/catalog.hpp — the datasets `mercury train --data NAME` knows, loaded by name.
//
// Contract: load_dataset() returns the train and test splits as Datasets plus what a checkpoint
// must carry to reproduce the input pipeline (the text vocabulary). Training splits of image
// datasets get their standard augmentation (random crop with 4-pixel padding + horizontal flip
// for CIFAR; crop for SVHN, whose digits are not mirror-symmetric). An unknown name or a missing
// directory fails with a message naming what was expected.
#pragma once

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/data/cifar.hpp"
#include "mercury/data/dataset.hpp"
#include "mercury/data/fashion_mnist.hpp"
#include "mercury/data/image_folder.hpp"
#include "mercury/data/speech_commands.hpp"
#include "mercury/data/svhn.hpp"
#include "mercury/data/text.hpp"
#include "net/file_kind.hpp"

namespace mercury::data {

struct DatasetOptions {
  std::string name = "fashion-mnist";
  std::string dir;             // empty: the dataset's default location (Fashion-MNIST only)
  int64_t image_size = 64;     // aid: images are resized to image_size × image_size
  uint64_t seed = 0;           // aid: the 80/20 split
  bool augment = true;         // standard training augmentation
  int64_t vocabulary = 20000;  // ag-news, debian-text
  bool log_mel = false;        // speech-commands: 40 log-mel bins instead of 161 linear
};

struct LoadedData {
  std::unique_ptr<Dataset> train, test;
  int64_t vocabulary = 0;                       // text datasets: vocabulary size
  std::map<std::string, std::string> metadata;  // to store with checkpoints
};

inline std::vector<std::string> dataset_names() {
  return {"fashion-mnist", "cifar10",         "cifar100", "svhn",
          "aid",           "speech-commands", "ag-news",  "debian-text"};
}

inline LoadedData load_dataset(const DatasetOptions& o) {
  LoadedData out;
  auto need_dir = [&](const char* holds) {
    if (o.dir.empty()) {
      throw std::invalid_argument("--data " + o.name + " needs --data-dir: the folder holding " +
                                  holds);
    }
  };
  auto images = [&](ImageDataset train, ImageDataset test, ImageAugmentation aug) {
    if (o.augment) train.augment = aug;
    out.train = std::make_unique<ImageDataset>(std::move(train));
    out.test = std::make_unique<ImageDataset>(std::move(test));
  };
  if (o.name == "fashion-mnist") {
    images(load_fashion_mnist(o.dir, Split::kTrain), load_fashion_mnist(o.dir, Split::kTest), {});
  } else if (o.name == "cifar10") {
    need_dir("data_batch_1..5.bin and test_batch.bin");
    images(load_cifar10(o.dir, Split::kTrain), load_cifar10(o.dir, Split::kTest), {4, true});
  } else if (o.name == "cifar100") {
    need_dir("train.bin and test.bin");
    images(load_cifar100(o.dir, Split::kTrain), load_cifar100(o.dir, Split::kTest), {4, true});
  } else if (o.name == "svhn") {
    need_dir("train_32x32.mat and test_32x32.mat");
    images(load_svhn(o.dir, Split::kTrain), load_svhn(o.dir, Split::kTest), {4, false});
  } else if (o.name == "aid") {
    need_dir("one sub-folder of JPEG/PNG images per class");
    ImageFolderOptions io;
    io.height = io.width = o.image_size;
    io.seed = o.seed;
    images(load_image_folder(o.dir, Split::kTrain, io), load_image_folder(o.dir, Split::kTest, io),
           {o.image_size / 8, true});
  } else if (o.name == "speech-commands") {
    need_dir("word folders of 16 kHz WAVs, validation_list.txt and testing_list.txt");
    SpeechCommandsOptions so;
    if (o.log_mel) so.features.kind = SpeechFeatureOptions::Kind::kLogMel;
    if (!o.augment) so.augment = SpeechAugmentOptions{0, 0.0, 0.0};
    SpeechCommands sc = load_speech_commands(o.dir, so);
    out.train = std::make_unique<SpeechDataset>(std::move(sc.train));
    out.test = std::make_unique<SpeechDataset>(std::move(sc.test));
  } else if (o.name == "ag-news" || o.name == "debian-text") {
    need_dir("train.csv and test.csv (AG News format)");
    int64_t classes = 4;
    if (o.name == "debian-text") {  // as many classes as classes.txt lists
      const std::string path = o.dir + "/classes.txt";
      if (net::file_kind(path) == "missing")
        throw DataError("debian-text: '" + path + "' missing (run mercury data debian-text)");
      std::istringstream in(net::read_regular_file(path, "debian-text class list"));
      classes = 0;
      for (std::string line; std::getline(in, line);) classes += !line.empty();
    }
    TextSplits t = load_text_splits(o.dir, classes, static_cast<size_t>(o.vocabulary));
    out.vocabulary = static_cast<int64_t>(t.vocabulary.size());
    out.metadata["mercury.vocabulary"] = t.vocabulary.serialize();
    out.train = std::make_unique<TextDataset>(std::move(t.train));
    out.test = std::make_unique<TextDataset>(std::move(t.test));
  } else {
    std::string known;
    for (const auto& n : dataset_names()) known += (known.empty() ? "" : ", ") + n;
    throw std::invalid_argument("--data: expected one of " + known + ", found '" + o.name + "'");
  }
  return out;
}

}  // namespace mercury::data
