# Every configuration in docs/ passes `nginx -t` with the built module,
# without a warning, on the nginx under test: docs/nginx.conf (its paths
# pointed at files the test makes), the HTTP/2 line its comment gives for
# this version, and docs/run.conf (what `./build.sh run` starts, its
# placeholders filled as build.sh fills them).

use strict;
use warnings;

use lib 't/lib';
use AcsTest::Util qw(slurp spew);
use Test::More;
use File::Path qw(make_path);
use File::Spec;
use AcsTest::Entra;
use AcsTest::FakeNH;

my $root = File::Spec->rel2abs(($ENV{TEST_NGINX_SERVROOT} || 't/servroot')
                               . '/410-example-config');
make_path("$root/acs", "$root/logs", "$root/lib", "$root/modules");

my $module = (split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '')[0]
    or BAIL_OUT('TEST_NGINX_LOAD_MODULES names no module');
$module = File::Spec->rel2abs($module);
my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';

my ($version) = `$nginx -v 2>&1` =~ m{nginx version: [^/\s]+/(\d+\.\d+\.\d+)};
ok($version, "the nginx under test says its version ($nginx)") or BAIL_OUT('no version');
my $num = sprintf '%d%03d%03d', split /\./, $version;


spew("$root/acs/nh-send.conn", 'Endpoint=sb://contoso-ns.servicebus.windows.net/;'
     . "SharedAccessKeyName=send-only;SharedAccessKey=ZXhhbXBsZS1rZXktbm90LXJlYWw=\n");
spew("$root/acs/eg-secret", "example-secret-0123456789\n");
spew("$root/acs/access.key", "ZXhhbXBsZS1hY2Nlc3Mta2V5LTAxMjM0NTY3ODk=\n");
my $keys = AcsTest::Entra::setup("$root/entra");
system('cp', $keys->{jwks}, "$root/acs/jwks.json") == 0 or die;

my $cert = (-r '/etc/ssl/certs/ssl-cert-snakeoil.pem') ? undef : 1;
if ($cert) {
    system("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=test -days 1 "
           . "-keyout $root/key.pem -out $root/cert.pem 2>/dev/null") == 0 or die;
}

# nginx -t of a configuration text: (exit status, output)
sub nginx_t {
    my ($name, $conf) = @_;
    spew("$root/$name", $conf);
    my $out = `$nginx -p $root/ -c $root/$name -t 2>&1`;
    return ($?, $out);
}

# --- docs/nginx.conf

my $conf = slurp('docs/nginx.conf');

$conf =~ s{load_module modules/ngx_http_acs_notify_module\.so;}{load_module $module;};
$conf =~ s{/etc/nginx/acs/}{$root/acs/}g;
$conf =~ s{/var/lib/nginx/acs-}{$root/lib/acs-}g;
$conf =~ s{/var/log/nginx/}{$root/logs/}g;
$conf =~ s{/run/nginx\.pid}{$root/logs/nginx.pid}g;
$conf =~ s{^user www-data;}{user root;}m;
if ($cert) {
    $conf =~ s{/etc/ssl/certs/ssl-cert-snakeoil\.pem}{$root/cert.pem};
    $conf =~ s{/etc/ssl/private/ssl-cert-snakeoil\.key}{$root/key.pem};
}
like($conf, qr/load_module \Q$module\E;/, 'the example loads the built module');
unlike($conf, qr{/etc/nginx/acs/}, 'every secret path points at a test file');

my ($rc, $out) = nginx_t('nginx.conf', $conf);
is($rc, 0, "nginx $version -t accepts docs/nginx.conf") or diag $out;
like($out, qr/test is successful/, 'nginx says the test is successful');
unlike($out, qr/\[(warn|emerg|alert|crit)\]/, 'without a warning') or diag $out;

# --- HTTP/2 as the example's comment says for this version

my $h2 = $conf;
if ($num >= 1025001) {
    $h2 =~ s{^(\s*listen 443 ssl;)$}{$1\n        http2 on;}m or die 'no listen 443 ssl;';
} else {
    $h2 =~ s{^(\s*)listen 443 ssl;$}{$1listen 443 ssl http2;}m or die 'no listen 443 ssl;';
}
like(slurp('docs/nginx.conf'),
     $num >= 1025001 ? qr/`http2 on;` from nginx 1\.25\.1/ : qr/`listen 443 ssl http2;` before/,
     "the example's comment names the HTTP/2 line of nginx $version");
($rc, $out) = nginx_t('nginx-http2.conf', $h2);
is($rc, 0, "... and with it, nginx -t passes")
    or diag $out;
unlike($out, qr/\[(warn|emerg|alert|crit)\]/, '... without a warning') or diag $out;

# --- docs/run.conf, filled in as ./build.sh run fills it

my $run = "$root/run";
make_path("$run/conf", "$run/logs", "$run/tmp", "$run/nh");
my $tls = AcsTest::FakeNH::setup_ca("$run/nh/ca");
system('cp', $tls->{ca}, "$run/nh/ca.pem") == 0 or die;
spew("$run/conf/nh.conn", 'Endpoint=sb://acs-test-ns.servicebus.windows.net/;'
     . "SharedAccessKeyName=send;SharedAccessKey=c2FtcGxlLWtleQ==\n");
spew("$run/conf/eg-secret", "0123456789abcdef0123456789abcdef\n");
spew("$run/conf/access.key", "ZXhhbXBsZS1hY2Nlc3Mta2V5LTAxMjM0NTY3ODk=\n");

my $rconf = slurp('docs/run.conf');
$rconf =~ s/\@MODULE\@/$module/g;
$rconf =~ s/\@RUN\@/$run/g;
$rconf =~ s/\@NHPORT\@/8443/g;
$rconf =~ s/\@PORT\@/8080/g;
unlike($rconf, qr/\@[A-Z]+\@/, 'docs/run.conf: every placeholder filled');
($rc, $out) = nginx_t('run.conf', $rconf);
is($rc, 0, "nginx $version -t accepts docs/run.conf") or diag $out;
unlike($out, qr/\[(warn|emerg|alert|crit)\]/, '... without a warning') or diag $out;

# every configuration file of docs/ is one of those
is_deeply([sort map { s{^docs/}{}r } glob 'docs/*.conf'], ['nginx.conf', 'run.conf'],
          'docs/ has no other configuration file');

done_testing();
