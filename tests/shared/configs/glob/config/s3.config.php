<?php
if (getenv('OBJECTSTORE_S3_BUCKET')) {
  $CONFIG = array('objectstore' => array('class' => '\\OC\\Files\\ObjectStore\\S3'));
}
