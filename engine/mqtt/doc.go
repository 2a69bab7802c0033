// Package mqtt is Sluice's MQTT face: an MQTT 3.1.1 and 5.0 listener on gnet, a thin layer over
// the engine. A PUBLISH is one record in the Sluice topic its MQTT topic maps to (topics.go); an
// MQTT subscription is one or two engine subscriptions (subscribe.go), delivered record by record
// as PUBLISHes (deliver.go); sessions (session.go) and retained messages (retained.go) are kept
// under DATA/mqtt. Packets are decoded and encoded by github.com/mochi-mqtt/server/v2/packets; the
// packet reader (reader.go) finds their boundaries. docs/mqtt.md describes the mapping and what is
// supported.
package mqtt
