# Expiry: expired registrations are never returned, and are purged, on
# access and by the background sweep.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use AcsTest::Reg;

no_shuffle();
no_root_location();
use_signed_requests(\&add_block_preprocessor);

# the keys left in the LMDB registry of this file's server root
sub registry_keys {
    my $dir = Test::Nginx::Socket::server_root() . '/registry';
    my @keys = grep { /\S/ } map { s/^\s+|\s+$//gr }
        `mdb_dump -p $dir 2>&1` =~ /^ (.*)\n .*\n/mg;
    return join ',', map { s/\\00/|/r } @keys;
}

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('http_config', <<'CONF') unless defined $block->http_config;
    acs_notify_registry registry ttl=2s;
CONF

    $block->set_value('config', <<'CONF') unless defined $block->config;
    location /acs/ {
        acs_notify_registrations;
        acs_notify_hmac_key dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=;
    }
CONF
});

run_tests();

__DATA__

=== TEST 1: a registration without ttlSeconds takes the directive's TTL
--- sreq eval
[[PUT => "/acs/users/u1/devices/short", reg_body()],
 [PUT => "/acs/users/u1/devices/long", reg_body(ttlSeconds => 3600)],
 [GET => "/acs/users/u1/devices"]]
--- error_code eval
[201, 201, 200]
--- response_body_like eval
["", "", qr/"deviceId":"long".*"deviceId":"short"/]



=== TEST 2: after its TTL a registration is gone from reads
--- init
sleep 3;
--- sreq eval
[[GET => "/acs/users/u1/devices/short"], [GET => "/acs/users/u1/devices"],
 [DELETE => "/acs/users/u1/devices/short"]]
--- error_code eval
[404, 200, 404]
--- response_body_like eval
[qr/NotFound/, qr/^\{"value":\[\{[^\]]*"deviceId":"long"[^\]]*\}\]\}$/, ""]



=== TEST 3: max_devices counts live devices
--- http_config
    acs_notify_registry registry ttl=2s max_devices=1;
--- sreq eval
[[PUT => "/acs/users/u3/devices/old", reg_body()],
 [PUT => "/acs/users/u3/devices/other", reg_body()]]
--- error_code eval
[201, 409]



=== TEST 4: an expired device does not count, and is purged by the next write
--- http_config
    acs_notify_registry registry ttl=2s max_devices=1;
--- init
sleep 3;
--- sreq eval
[[PUT => "/acs/users/u3/devices/new", reg_body(ttlSeconds => 3600)]]
--- error_code: 201
--- response_body_like
"deviceId":"new"



=== TEST 5: the background sweep purges expired registrations from disk
--- sreq eval
[[PUT => "/acs/users/u4/devices/sweep-me", reg_body()]]
--- error_code: 201
--- wait: 4
--- error_log eval
qr/acs_notify_registry: purged \d+ expired registrations/
--- no_error_log
[crit]



=== TEST 6: nothing expired is left on disk
--- request
GET /nothing
--- error_code: 404
--- response_body_like
.*
--- init
die "registry still holds: " . main::registry_keys() . "\n"
    if main::registry_keys() =~ /sweep-me|short|u3\|old/;
