// Package scorer gives a message its Spam Confidence Level (SCL), 0 to 9, as
// Exchange's Intelligent Message Filter did.
//
// A message is parsed once (Parse) into a Message that the classifier and the
// custom weight list both read. The SCL is then:
//
//  1. the classifier's SCL (a pluggable Classifier: the built-in model, an
//     external engine, or None for rules-only filtering);
//  2. then the weight list: if any matched entry is MIN the SCL is 0, else if
//     any is MAX it is 9, else the sum of the matched Changes is added and the
//     result clamped to 0..9.
//
// The Result carries its own explanation (classifier name and figure, every
// matched entry) so the gateway can stamp it and an admin can see why.
package scorer
