#!/bin/sh
# Writes the broker's password file and ACL from the environment; run by the mosquitto-init
# service (image eclipse-mosquitto:2, as root) each time the stack starts, so a password changed
# in .env applies at the next `docker compose up -d` (then: docker compose restart mosquitto).
#
#   MQTT_USERNAME / MQTT_PASSWORD                the gateway: publishes under the prefix
#   MQTT_READER_USERNAME / MQTT_READER_PASSWORD  dashboards, historians, mosquitto_sub: reads it
#   MQTT_TOPIC_PREFIX                            the gateway's mqtt.topic_prefix (default factory)
#   MOSQUITTO_AUTH_DIR                           where to write (default /mosquitto/auth)
set -eu

: "${MQTT_USERNAME:?}" "${MQTT_PASSWORD:?}" "${MQTT_READER_USERNAME:?}" "${MQTT_READER_PASSWORD:?}"
prefix="${MQTT_TOPIC_PREFIX:-factory}"
dir="${MOSQUITTO_AUTH_DIR:-/mosquitto/auth}"

mkdir -p "$dir"
umask 077
rm -f "$dir/passwords.new" "$dir/acl.new"
mosquitto_passwd -c -b "$dir/passwords.new" "$MQTT_USERNAME" "$MQTT_PASSWORD"
mosquitto_passwd -b "$dir/passwords.new" "$MQTT_READER_USERNAME" "$MQTT_READER_PASSWORD"
cat > "$dir/acl.new" <<ACL
user $MQTT_USERNAME
topic write $prefix/#

user $MQTT_READER_USERNAME
topic read $prefix/#
topic read \$SYS/#
ACL
# The broker drops root for the user mosquitto, which must be able to read both files.
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
  chown mosquitto:mosquitto "$dir" "$dir/passwords.new" "$dir/acl.new"
fi
chmod 0700 "$dir"
mv "$dir/passwords.new" "$dir/passwords"
mv "$dir/acl.new" "$dir/acl"
echo "mosquitto-auth: users $MQTT_USERNAME (writes $prefix/#) and $MQTT_READER_USERNAME (reads)"
